"""losslines.store"""
