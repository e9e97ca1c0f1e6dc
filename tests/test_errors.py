"""Any exception as one line: what trials, notices, checks and the CLI show of it."""

from __future__ import annotations

from mnist_bench.errors import LINE_CHARS, MnistBenchError, one_line


def test_a_multi_line_message_keeps_its_first_line_that_says_something() -> None:
    exc = RuntimeError("\n  CUDA error: an illegal memory access was encountered  \nCompile with TORCH_USE_CUDA_DSA")
    assert one_line(exc) == "RuntimeError: CUDA error: an illegal memory access was encountered"


def test_a_long_message_is_cut_with_its_type_at_the_one_length() -> None:
    text = one_line(ValueError("x" * 1000))
    assert len(text) == LINE_CHARS and text.startswith("ValueError: xxx")


def test_an_empty_message_is_its_type() -> None:
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert one_line(RuntimeError(" \n\t")) == "RuntimeError"
    assert one_line(MnistBenchError("")) == "MnistBenchError"


def test_our_own_errors_read_as_written_and_whole() -> None:
    """A MnistBenchError is one line by contract, its advice last: never cut, no type before it."""
    advice = "lost the storage for over 60 s; " + "run the same command again to resume " * 10
    assert one_line(MnistBenchError(advice)) == advice.strip()
    assert len(one_line(MnistBenchError(advice))) > LINE_CHARS
