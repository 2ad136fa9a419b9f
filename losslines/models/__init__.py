"""losslines.models"""
