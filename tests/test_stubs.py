"""parpy/_core.pyi against the extension, where stubtest cannot look.

stubtest (.ci/run) compares every function, type and method of parpy._core with
its stub, by the methods' text signatures. A kernel is a Kernel instance, whose
call stubtest does not compare: the stub gives each kernel a call protocol
(``fib: Final[Kernel[_Fib]]``), checked here against inspect.signature, with
``bind`` and the kernel that bind returns.
"""

import ast
import inspect
import types
from pathlib import Path

import pytest

from parpy import _core

STUB = ast.parse(Path(_core.__file__).with_name("_core.pyi").read_text(encoding="utf-8"))
CLASSES = {node.name: node for node in STUB.body if isinstance(node, ast.ClassDef)}
# bind's arguments where the kernel has no defaults to bind
BIND_ARGS = {"fib_mod": (7,)}


def protocol_of(annotation: ast.expr) -> str:
    """``_Fib`` of ``Kernel[_Fib]`` (and of ``Final[Kernel[_Fib]]``)."""
    if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Final":
        annotation = annotation.slice
    assert isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Kernel"
    assert isinstance(annotation.slice, ast.Name)
    return annotation.slice.id


def kernel_protocols() -> dict[str, str]:
    """Each kernel's name with the name of its call protocol in the stub."""
    return {
        node.target.id: protocol_of(node.annotation)
        for node in STUB.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and ast.unparse(node.annotation).startswith("Final[Kernel[")
    }


def method(cls: str, name: str) -> list[ast.FunctionDef]:
    """The stub's definitions of cls.name: one, or its overloads."""
    found = [n for n in CLASSES[cls].body if isinstance(n, ast.FunctionDef) and n.name == name]
    assert found, f"{cls}.{name} is not in the stub"
    return found


def signature(func: ast.FunctionDef) -> inspect.Signature:
    """The stub function's parameters after self, as inspect gives a builtin's:
    names, kinds and defaults, no annotations."""
    P = inspect.Parameter
    args = func.args
    positional = args.posonlyargs + args.args
    defaults = [P.empty] * (len(positional) - len(args.defaults))
    defaults += [ast.literal_eval(d) for d in args.defaults]
    params = [
        P(
            a.arg,
            P.POSITIONAL_ONLY if i < len(args.posonlyargs) else P.POSITIONAL_OR_KEYWORD,
            default=d,
        )
        for i, (a, d) in enumerate(zip(positional, defaults, strict=True))
    ]
    if args.vararg:
        params.append(P(args.vararg.arg, P.VAR_POSITIONAL))
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        params.append(
            P(a.arg, P.KEYWORD_ONLY, default=P.empty if d is None else ast.literal_eval(d))
        )
    if args.kwarg:
        params.append(P(args.kwarg.arg, P.VAR_KEYWORD))
    assert params and params[0].name == "self"
    return inspect.Signature(params[1:])


def call_signature(protocol: str) -> inspect.Signature:
    (call,) = method(protocol, "__call__")
    return signature(call)


def test_every_kernel_has_a_call_protocol():
    assert all(isinstance(getattr(_core, name), _core.Kernel) for name in _core.__all__)
    assert set(kernel_protocols()) == set(_core.__all__)


@pytest.mark.parametrize("name", _core.__all__)
def test_kernel_call_matches_the_stub(name):
    protocol = kernel_protocols()[name]
    assert call_signature(protocol) == inspect.signature(getattr(_core, name))


def bind_overload(protocol: str, kernel: _core.Kernel) -> tuple[ast.FunctionDef, str]:
    """The bind overload that mypy picks for a kernel of this protocol, and
    the protocol of the kernel it returns."""
    for overload in method("Kernel", "bind"):
        self_type = overload.args.posonlyargs[0].annotation
        assert self_type is not None and overload.returns is not None
        if protocol_of(self_type) == protocol:
            return overload, protocol_of(overload.returns)
        if protocol_of(self_type) == "_Unary" and kernel.min_args == 1:
            # bind() of a kernel callable with one argument: the same call
            assert protocol_of(overload.returns) == "_Unary"
            return overload, protocol
    raise AssertionError(f"no bind overload takes Kernel[{protocol}]")


@pytest.mark.parametrize("name", _core.__all__)
def test_bind_matches_the_stub(name):
    kernel = getattr(_core, name)
    overload, bound_protocol = bind_overload(kernel_protocols()[name], kernel)
    # bind takes the positional arguments after the first, positionally, with their
    # defaults (not a single call's keyword-only options, such as fib's workers)
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = inspect.signature(kernel).parameters.values()
    after_first = [p for p in params if p.kind in positional][1:]
    expected = [p.replace(kind=inspect.Parameter.POSITIONAL_ONLY) for p in after_first]
    assert list(signature(overload).parameters.values()) == expected
    bound = kernel.bind(*BIND_ARGS.get(name, ()))
    assert call_signature(bound_protocol) == inspect.signature(bound)


@pytest.mark.parametrize(
    "cls",
    [_core.Kernel, _core.Queue, _core.Control, _core.Batch, _core.WorkQueue, _core.PipelineRun],
)
def test_methods_take_self(cls):
    """An unbound method's signature starts with self, as a stub's method does
    (the text signature starts with $self)."""
    methods = {
        name: value
        for name, value in vars(cls).items()
        if isinstance(value, types.MethodDescriptorType) and not name.startswith("_")
    }
    assert methods
    firsts = {
        name: next(iter(inspect.signature(m).parameters), None) for name, m in methods.items()
    }
    assert firsts == dict.fromkeys(methods, "self")
