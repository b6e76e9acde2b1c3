/**
 * onnxruntime-node reports every CUDA provider load failure as the same message; the real cause is
 * printed by ONNX Runtime's logger. Turn what we can see into an actionable sentence.
 */
export function explainCudaFailure(err: unknown): string {
  const msg = String((err as Error)?.message ?? err);
  const install = 'install the CUDA provider: see "GPU boxes" in the README (npm_config_onnxruntime_node_install=cuda12 npm rebuild onnxruntime-node, or copy libonnxruntime_providers_{shared,cuda}.so into node_modules/onnxruntime-node/bin/napi-v6/linux/x64/)';
  if (/libonnxruntime_providers_shared|Failed to load shared library/.test(msg)) {
    if (/libcublas|libcudart|libcurand|libcudnn|libcufft/.test(msg)) return `CUDA libraries not found (${/lib\w+\.so[.\d]*/.exec(msg)?.[0]}); add the CUDA 13 / cuDNN 9 library directories to LD_LIBRARY_PATH`;
    if (/libcuda\.so/.test(msg)) return 'no NVIDIA driver (libcuda.so.1 not found); run on a machine with a GPU driver';
    return `the CUDA execution provider is not installed; ${install}`;
  }
  if (/driver version is insufficient/.test(msg)) return 'the NVIDIA driver is older than the CUDA runtime the provider needs; update the driver';
  if (/no CUDA-capable device|invalid device ordinal/i.test(msg)) return 'no such CUDA device; check --device cuda:N and nvidia-smi';
  return `${msg.split('\n')[0].slice(0, 200)}; ${install}`;
}
