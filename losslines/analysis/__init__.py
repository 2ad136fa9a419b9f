"""losslines.analysis"""
