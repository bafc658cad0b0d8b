"""Build the detector's C module; everything else is in pyproject.toml.

The module needs only Python's headers and a C compiler, which pymilter needs too.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "postveil.detection._wordscan",
            sources=["src/postveil/detection/_wordscan.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
