"""Modules: the seed's building blocks (state_dict-compatible) and a full Generator."""

from stylegan_ops.nn.generator import Generator
from stylegan_ops.nn.modules import AdaIN, MappingNetwork, NoiseInjection, SynthesisBlock, convert

__all__ = ["AdaIN", "Generator", "MappingNetwork", "NoiseInjection", "SynthesisBlock", "convert"]
