/**
 * Relu's gradient in one kernel where the backend has it (the native set): tfjs computes
 * dy * cast(step(x)) as three kernel calls and two full passes over the activation, which for a
 * convolutional layer's activations is several milliseconds per step. Same values, NaN included:
 * the kernel multiplies dy by exactly what step(x) gives.
 */
import * as tf from '@tensorflow/tfjs';

export const RELU_GRAD_KERNEL = 'KdcacheReluGrad';

let installed = false;

/** Replace tfjs's gradient of Relu (idempotent); backends without the kernel keep tfjs's formula. */
export function installReluGradient(): void {
  if (installed) return;
  installed = true;
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved as tf.Tensor[];
      const grad = dy as tf.Tensor;
      return {
        x: () => (tf.getKernel(RELU_GRAD_KERNEL, tf.getBackend()) && grad.dtype === 'float32' && x.dtype === 'float32' && tf.util.arraysEqual(grad.shape, x.shape)
          ? tf.engine().runKernel(RELU_GRAD_KERNEL, { dy: grad, x }) as tf.Tensor
          : tf.mul(grad, tf.cast(tf.step(x), 'float32'))),
      };
    },
  });
}
