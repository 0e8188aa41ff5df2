"""The edgejar_llama role's filters: which requirements a wheelhouse satisfies, what a venv lacks."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from tests.conftest import LLAMA_FILTERS, load_module

F = load_module(LLAMA_FILTERS, "edgejar_llama_filters")
WHEELS = [
    "/wh/x86_64-cpu-cp311/llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl",
    "/wh/x86_64-cpu-cp311/llama_cpp_python-0.3.35-py3-none-linux_x86_64.whl",
    "/wh/x86_64-cpu-cp311/numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    "/wh/x86_64-cpu-cp311/numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "/wh/x86_64-cpu-cp311/markupsafe-3.0.4-cp311-cp311-manylinux2014_x86_64.whl",
    "/wh/x86_64-cpu-cp311/typing_extensions-4.16.0-py3-none-any.whl",
    "/wh/x86_64-cpu-cp311/README.txt",
    "/wh/x86_64-cpu-cp311/not-a-wheel.whl",
]


def test_missing_wheels_by_normalised_name_and_version() -> None:
    specs = [
        "llama-cpp-python==0.3.36",
        "MarkupSafe",
        "typing-extensions",
        "numpy<2",
        "psutil",
        "jinja2==3.1.6",
    ]
    assert F.missing_wheels(specs, WHEELS) == ["psutil", "jinja2==3.1.6"]
    assert F.missing_wheels(["llama-cpp-python==0.3.37"], WHEELS) == ["llama-cpp-python==0.3.37"]
    assert F.missing_wheels(["numpy"], []) == ["numpy"]


def test_pinned_takes_the_highest_satisfying_wheel() -> None:
    specs = ["llama-cpp-python==0.3.35", "numpy", "numpy<2", "MarkupSafe"]
    assert F.pinned(specs, WHEELS) == [
        "llama-cpp-python==0.3.35",
        "numpy==2.4.6",
        "numpy==1.26.4",
        "markupsafe==3.0.4",
    ]


def test_pinned_without_a_wheel_is_an_error() -> None:
    with pytest.raises(AnsibleFilterError, match="psutil"):
        F.pinned(["psutil"], WHEELS)


def test_not_installed_compares_names_and_versions() -> None:
    pip_list = [
        {"name": "llama_cpp_python", "version": "0.3.36"},
        {"name": "numpy", "version": "2.4.5"},
        {"name": "MarkupSafe", "version": "3.0.4"},
        {"name": "torch", "version": "2.13.0+cpu"},
        {"name": "broken"},
    ]
    pins = [
        "llama-cpp-python==0.3.36",
        "numpy==2.4.6",
        "markupsafe==3.0.4",
        "psutil==7.2.2",
        "torch==2.13.0+cpu",
    ]
    assert F.not_installed(pins, pip_list) == ["numpy==2.4.6", "psutil==7.2.2"]
    assert F.not_installed(pins, []) == pins


def test_a_bad_requirement_names_the_variable_and_the_spec() -> None:
    with pytest.raises(
        AnsibleFilterError, match=r"edgejar_llama_packages: 'numpy >>= 1' is not a requirement"
    ):
        F.missing_wheels(["numpy >>= 1"], WHEELS)


def test_filters_are_registered_under_the_role_prefix() -> None:
    assert sorted(F.FilterModule().filters()) == [
        "edgejar_llama_lock_requirements",
        "edgejar_llama_locked",
        "edgejar_llama_missing_wheels",
        "edgejar_llama_not_installed",
        "edgejar_llama_pinned",
        "edgejar_llama_unlocked",
    ]
