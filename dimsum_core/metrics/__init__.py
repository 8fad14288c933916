"""Sample-quality metrics: FID, KID, Inception Score, precision/recall, on extractor features.

dimsum's default extractor is torch-fidelity's Inception-v3 port. Its numbers are close to, but NOT
interchangeable with, ADM's TensorFlow evaluator or StyleGAN-ADA's ``fid50k_full`` (which the official
DiMSUM numbers use): compare FIDs only when they come from the same tool, reference and sample count.
"""
