"""Build the hubmon._core extension; project metadata lives in pyproject.toml."""
import os

from setuptools import Extension, setup

extra_compile_args = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"]
extra_link_args = []
if os.environ.get("HUBMON_SANITIZE"):
    # An AddressSanitizer + UndefinedBehaviorSanitizer build for CI.
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    extra_compile_args += flags + ["-O1", "-g"]
    extra_link_args += flags

setup(
    ext_modules=[
        Extension(
            "hubmon._core",
            sources=[
                "src/module.c",
                "src/tracer.c",
                "src/thread_tracer.c",
                "src/record.c",
                "src/sampler.c",
                "src/callbacks.c",
                "src/cause.c",
            ],
            depends=["src/hubmon.h"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            define_macros=[("_GNU_SOURCE", "1")],
        )
    ],
)
