"""losslines.kernels"""
