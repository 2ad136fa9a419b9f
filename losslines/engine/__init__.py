"""losslines.engine"""
