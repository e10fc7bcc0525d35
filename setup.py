"""Build parpy._core from csrc/ with OpenMP and GMP.

Switches (environment variables):
  PARPY_DEBUG=1             -O0 -g, assertions on
  PARPY_SANITIZE=address    ASan + UBSan instrumentation
  PARPY_SANITIZE=thread     ThreadSanitizer instrumentation
  PARPY_WERROR=1            warnings are errors (CI)
"""

import os
import sys
import tempfile
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

GMP_MISSING = (
    "parpy needs the GMP library and its headers (gmp.h, libgmp) to build.\n"
    "Install them and retry:\n"
    "  Debian/Ubuntu:  apt-get install libgmp-dev\n"
    "  Fedora/RHEL:    dnf install gmp-devel\n"
    "  macOS:          brew install gmp\n"
    "  conda:          conda install gmp"
)


def _flags():
    compile_args = ["-std=c11", "-fopenmp", "-Wall", "-Wextra", "-fvisibility=hidden"]
    link_args = ["-fopenmp"]
    macros = []
    if os.environ.get("PARPY_DEBUG") == "1":
        compile_args += ["-O0", "-g3", "-UNDEBUG"]
        macros.append(("PARPY_DEBUG", "1"))
    else:
        compile_args += ["-O2"]
    sanitize = os.environ.get("PARPY_SANITIZE", "")
    if sanitize == "address":
        san = [
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=undefined",
        ]
        compile_args += san + ["-g"]
        link_args += san
    elif sanitize == "thread":
        compile_args += ["-fsanitize=thread", "-g", "-fno-omit-frame-pointer"]
        link_args += ["-fsanitize=thread"]
        macros.append(("PARPY_TSAN", "1"))
    elif sanitize:
        sys.exit(f"PARPY_SANITIZE must be 'address' or 'thread', not {sanitize!r}")
    if os.environ.get("PARPY_WERROR") == "1":
        compile_args.append("-Werror")
    return compile_args, link_args, macros


class BuildExt(build_ext):
    """build_ext that first checks that GMP can be compiled and linked."""

    def run(self):
        self._check_gmp()
        super().run()

    def _check_gmp(self):
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.errors import CompileError, LinkError
        from setuptools._distutils.sysconfig import customize_compiler

        compiler = new_compiler()
        customize_compiler(compiler)
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "gmpcheck.c")
            with open(src, "w") as f:
                f.write(
                    "#include <gmp.h>\n"
                    "int main(void) { mpz_t z; mpz_init(z); mpz_fib_ui(z, 10); "
                    "int r = (int)mpz_get_ui(z) != 55; mpz_clear(z); return r; }\n"
                )
            try:
                objs = compiler.compile([src], output_dir=tmp, include_dirs=self.include_dirs or [])
            except CompileError:
                sys.exit("error: gmp.h was not found.\n" + GMP_MISSING)
            try:
                compiler.link_executable(
                    objs,
                    "gmpcheck",
                    output_dir=tmp,
                    libraries=["gmp"],
                    library_dirs=self.library_dirs or [],
                )
            except LinkError:
                sys.exit("error: libgmp could not be linked.\n" + GMP_MISSING)


compile_args, link_args, macros = _flags()

setup(
    ext_modules=[
        Extension(
            "parpy._core",
            sources=sorted(glob("csrc/**/*.c", recursive=True)),
            depends=sorted(glob("csrc/**/*.h", recursive=True)),
            include_dirs=["csrc"],
            libraries=["gmp"],
            define_macros=macros,
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
