"""losslines.data"""
