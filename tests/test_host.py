"""jaxsoc/host.py: the CPU as tables and benchmarks name it, from /proc/cpuinfo's text."""
from jaxsoc import host

ZEN2 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 sha_ni

processor\t: 1
model name\t: another core
"""


def test_the_cpu_is_described_by_model_numbers_and_widest_vector_extension():
    assert host.cpu_description(ZEN2) == "AMD EPYC (family 23, model 49, avx2)"
    zen4 = ZEN2.replace("model\t\t: 49", "model\t\t: 17").replace("cpu family\t: 23", "cpu family\t: 25")
    assert host.cpu_description(zen4.replace("sha_ni", "avx512f avx512bw")) == "AMD EPYC (family 25, model 17, avx512)"
    assert host.cpu_description("model name\t: Some CPU\nflags\t: sse2\n") == "Some CPU (no AVX)"
