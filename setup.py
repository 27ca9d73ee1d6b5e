from setuptools import find_packages, setup

setup(
    name="tfdistill",
    version="0.1.0",
    description="Distil big Keras models into small, fast ones that run on phones.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tfdistill", "tfdistill.*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        # Keep equal to tfdistill._keras_internals.TESTED_KERAS: .ci/run runs the whole suite on
        # the newest Keras allowed and the smoke subset on 3.12.0, the oldest.
        "keras>=3.12,<3.16",
        "numpy",
        "absl-py",
        "ai-edge-litert",
        "scikit-learn",
        "matplotlib",
        "pyyaml",
    ],
    extras_require={
        "compress": ["tensorflow-model-optimization>=0.8,<0.9", "tf-keras~=2.21.0"],
        "tensorboard": ["tensorboard>=2.16"],
        # LiteRT Quantizer recipes (export.to_tflite(quantizer="litert")); pins ai-edge-litert.
        "litert-quantizer": ["litert-quantizer>=0.11,<0.12"],
        "test": [
            "litert-quantizer>=0.11,<0.12",
            "pytest>=8",
            "tensorboard>=2.16",
            "pytest-xdist>=3",
            "ruff",
            "tensorflow-model-optimization>=0.8,<0.9",
            "tf-keras~=2.21.0",
        ],
    },
    entry_points={"console_scripts": ["tfdistill=tfdistill.cli:main"]},
)
