/**
 * The distillation loss in tfjs ops, differentiated by tfjs during training. Same definition as
 * losses.ts (the reference); tests check the two agree, gradients included.
 */
import * as tf from '@tensorflow/tfjs';
import { TAIL_FLOOR } from '../sparse/tail.js';
import type { LossParams } from './losses.js';
import { ABSENT_LOGIT, ABSENT_THRESHOLD } from './sparse-targets.js';

/**
 * Mean over the batch of
 *   alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T))  (kind 'kd')   or  alpha * mean_k (z_s - z_t)^2  (kind 'mse')
 *   + (1 - alpha) * CE(y, z_s).
 * `teacher` may be null only when alpha = 0, `labels` (int32) only when alpha = 1.
 */
export function distillationLoss(
  student: tf.Tensor2D,
  teacher: tf.Tensor2D | null,
  labels: tf.Tensor1D | null,
  p: LossParams,
): tf.Scalar {
  return tf.tidy(() => {
    const terms: tf.Scalar[] = [];
    if (p.alpha > 0) {
      if (!teacher) throw new Error('distillationLoss: teacher logits are required when alpha > 0');
      const soft = p.kind === 'mse' ? mseTerm(student, teacher)
        : p.tail === 'bucket' ? bucketTerm(student, teacher, p.temperature) : kdTerm(student, teacher, p.temperature);
      terms.push(tf.mul(p.alpha, soft));
    }
    if (p.alpha < 1) {
      if (!labels) throw new Error('distillationLoss: labels are required when alpha < 1');
      terms.push(tf.mul(1 - p.alpha, crossEntropyTerm(student, labels)));
    }
    return terms.length === 1 ? terms[0] : tf.addN(terms) as tf.Scalar;
  });
}

/** T^2 * mean_b KL(p_t || p_s). The teacher side carries no gradient (it is data). */
function kdTerm(student: tf.Tensor2D, teacher: tf.Tensor2D, T: number): tf.Scalar {
  const logPt = tf.logSoftmax(tf.div(teacher, T));
  const logPs = tf.logSoftmax(tf.div(student, T));
  const kl = tf.sum(tf.mul(tf.exp(logPt), tf.sub(logPt, logPs)), 1);
  return tf.mul(T * T, tf.mean(kl));
}

/**
 * T^2 * mean_b KL(P || Q) over the stored classes plus one tail bucket (sparse-targets.ts has the
 * definition and a float64 reference). `teacher` holds log p_i of stored classes and ABSENT_LOGIT
 * elsewhere. Masked entries use a finite stand-in instead of -Inf so no gradient becomes NaN.
 */
function bucketTerm(student: tf.Tensor2D, teacher: tf.Tensor2D, T: number): tf.Scalar {
  const c = student.shape[1];
  const stored = tf.greater(teacher, ABSENT_THRESHOLD);
  const absent = tf.fill(teacher.shape, ABSENT_LOGIT);
  const rest = tf.sub(c, tf.sum(tf.cast(stored, 'float32'), 1, true));
  const mass = tf.sum(tf.exp(teacher), 1, true); // exp(ABSENT_LOGIT) is exactly 0
  const logU = tf.log(tf.div(tf.maximum(tf.sub(1, mass), TAIL_FLOOR), tf.maximum(rest, 1)));
  const logBucket = tf.add(tf.log(tf.maximum(rest, 1)), tf.div(logU, T));
  const logP = tf.logSoftmax(tf.concat([tf.where(stored, tf.div(teacher, T), absent), logBucket], 1));
  const logQ = tf.logSoftmax(tf.div(student, T));
  const logQTail = tf.logSumExp(tf.where(stored, absent, logQ), 1, true);
  // Top-k caches keep fewer classes than there are (k < C), so every row has a tail to score.
  const kl = tf.sum(tf.mul(tf.exp(logP), tf.sub(logP, tf.concat([logQ, logQTail], 1))), 1);
  return tf.mul(T * T, tf.mean(kl));
}

function mseTerm(student: tf.Tensor2D, teacher: tf.Tensor2D): tf.Scalar {
  return tf.mean(tf.squaredDifference(student, teacher));
}

function crossEntropyTerm(student: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  const k = student.shape[1];
  const oneHot = tf.oneHot(labels.toInt(), k);
  return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(student)), 1))) as tf.Scalar;
}
