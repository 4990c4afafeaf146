"""The C deliverable of a microcontroller run: a header C99 and C++11 both compile, the model array read back byte
for byte, and a generated function that registers exactly the model's operators with TFLite Micro's resolver."""
import json
import shutil
import subprocess

import pytest

from edgedistill.deploy.backends.tflm_c import operators
from edgedistill.deploy.backends.tflm_c import resolver_method

needs_compilers = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("g++")), reason="needs gcc and g++")

# MicroMutableOpResolver's methods and the operator each registers, as tensorflow/lite/micro/
# micro_mutable_op_resolver.h declares them (a generated call to any other name fails to compile below)
TFLM_METHODS = {
    "AddAdd": "ADD", "AddAveragePool2D": "AVERAGE_POOL_2D", "AddConcatenation": "CONCATENATION",
    "AddConv2D": "CONV_2D", "AddDepthwiseConv2D": "DEPTHWISE_CONV_2D", "AddDequantize": "DEQUANTIZE",
    "AddFullyConnected": "FULLY_CONNECTED", "AddLogistic": "LOGISTIC", "AddMaxPool2D": "MAX_POOL_2D",
    "AddMean": "MEAN", "AddMul": "MUL", "AddPad": "PAD", "AddPadV2": "PADV2", "AddQuantize": "QUANTIZE",
    "AddRelu": "RELU", "AddRelu6": "RELU6", "AddReshape": "RESHAPE", "AddSoftmax": "SOFTMAX",
    "AddSqueeze": "SQUEEZE", "AddStridedSlice": "STRIDED_SLICE", "AddSub": "SUB", "AddTanh": "TANH",
    "AddTranspose": "TRANSPOSE", "AddCumSum": "CUMSUM", "AddBatchToSpaceNd": "BATCH_TO_SPACE_ND",
    "AddL2Pool2D": "L2_POOL_2D", "AddUnidirectionalSequenceLSTM": "UNIDIRECTIONAL_SEQUENCE_LSTM",
}

C_MAIN = """#include <stdio.h>
#include "{stem}.h"
static unsigned char arena[{upper}_ARENA_BYTES];
int main(void) {{
  unsigned long sum = 0;
  unsigned int i;
  for (i = 0; i < g_{stem}_len; i++) sum += g_{stem}[i];
  printf("%u %lu %u %d\\n", g_{stem}_len, sum, (unsigned)sizeof(arena), {upper}_OP_COUNT);
  return 0;
}}
"""

CXX_MAIN = """#include <cstdio>
#include "{stem}.h"
struct Recorder {{
  int count;
{methods}
}};
int main() {{
  Recorder r;
  r.count = 0;
  bool ok = {stem}_register_ops(r);
  std::printf("%d %d\\n", ok ? 1 : 0, r.count);
  return 0;
}}
"""


@needs_compilers
def test_the_header_compiles_as_c99_and_the_array_is_the_file(deployed_run, tmp_path):
    out, _ = deployed_run
    work = tmp_path / "c"
    shutil.copytree(out / "export", work)
    stem = "student_kd_int8"
    (work / "main.c").write_text(C_MAIN.format(stem=stem, upper=stem.upper()))
    objects = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", "main.c"],
                             capture_output=True, text=True, cwd=work)
    assert objects.returncode == 0, objects.stderr
    cxx = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-c", f"{stem}.cc"],
                         capture_output=True, text=True, cwd=work)
    assert cxx.returncode == 0, cxx.stderr
    linked = subprocess.run(["g++", "main.o", f"{stem}.o", "-o", "prog"], capture_output=True, text=True, cwd=work)
    assert linked.returncode == 0, linked.stderr  # C linkage: the C program finds the array the C++ file defines
    length, total, arena, op_count = map(int, subprocess.run([str(work / "prog")], capture_output=True, text=True,
                                                             check=True).stdout.split())
    data = (work / f"{stem}.tflite").read_bytes()
    assert (length, total) == (len(data), sum(data))
    fmt = json.loads((out / "metrics.json").read_text())["models"]["student_kd"]["deploy"]["formats"]["tflm-int8"]
    assert arena == fmt["measured_ram_bytes"] + fmt["arena_margin_bytes"] and arena % 16 == 0
    assert op_count == len(operators(data))


@needs_compilers
def test_the_resolver_function_registers_exactly_the_models_operators(deployed_run, tmp_path):
    out, _ = deployed_run
    work = tmp_path / "cxx"
    shutil.copytree(out / "export", work)
    stem = "student_kd_int8"
    methods = "".join(f'  int {m}() {{ std::printf("{op}\\n"); ++count; return 0; }}\n'
                      for m, op in TFLM_METHODS.items())
    (work / "main.cc").write_text(CXX_MAIN.format(stem=stem, methods=methods))
    done = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "main.cc", f"{stem}.cc", "-o", "prog"],
                          capture_output=True, text=True, cwd=work)
    assert done.returncode == 0, done.stderr  # every generated Add...() is a real resolver method
    lines = subprocess.run([str(work / "prog")], capture_output=True, text=True, check=True).stdout.split()
    registered, (ok, count) = lines[:-2], lines[-2:]
    expected = operators((work / f"{stem}.tflite").read_bytes())  # read from the flatbuffer, not our header
    assert sorted(registered) == expected and ok == "1" and int(count) == len(expected)


@pytest.mark.parametrize("op,method", [("CONV_2D", "AddConv2D"), ("RELU6", "AddRelu6"), ("PADV2", "AddPadV2"),
                                       ("CUMSUM", "AddCumSum"), ("L2_POOL_2D", "AddL2Pool2D"),
                                       ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"), ("ethos-u", "AddEthosU"),
                                       ("BATCH_TO_SPACE_ND", "AddBatchToSpaceNd")])
def test_resolver_method_names_are_tflms(op, method):
    assert resolver_method(op) == method
    if method in TFLM_METHODS:
        assert TFLM_METHODS[method] == op
