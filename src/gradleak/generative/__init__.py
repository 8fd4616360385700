"""Generator priors for generative gradient-inversion attacks (GGL, GIFD).

Example:
    >>> from gradleak.generative import load_generator
    >>> load_generator("mnist-dcgan").num_classes
    10
"""

from gradleak.generative.base import Generator, ModuleGenerator, check_compatible
from gradleak.generative.dcgan import ConditionalDCGAN
from gradleak.generative.hub import load_generator, shipped_generators

__all__ = ["ConditionalDCGAN", "Generator", "ModuleGenerator", "check_compatible", "load_generator",
           "shipped_generators"]
