"""Losses of the asynchronous methods and their gradients with respect to the network outputs.

Each kernel takes the head outputs of a segment's rows, writes ∂L/∂(outputs) into the ``delta``
rows that :func:`numba_a3c.nn.network.backward_rows` then backpropagates, and returns the loss.
Everything is a *loss to minimise*; the optimisers descend it.
"""

import numpy as np
from numba import njit

from numba_a3c.nn.layers import log_softmax_forward

_ZERO = np.float32(0.0)
_HALF = np.float32(0.5)
_TWO = np.float32(2.0)


@njit(nogil=True, cache=True, error_model="numpy")
def q_loss(q, actions, targets, dq, n):
    """Squared TD error of the Q methods (Algorithm 1 and S2 of the paper).

        L = Σ_i (y_i − Q(s_i, a_i))²           ∂L/∂Q(s_i, a) = −2 (y_i − Q(s_i, a_i)) · [a = a_i]

    q: (≥n, A) Q-values of the rows, actions (≥n,), targets y (≥n,) treated as constants;
    dq: (≥n, A) written (not accumulated) for the first n rows. Returns L.
    """
    loss = _ZERO
    A = q.shape[1]
    for i in range(n):
        a = actions[i]
        err = np.float32(targets[i]) - q[i, a]
        loss += err * err
        for k in range(A):
            dq[i, k] = _ZERO
        dq[i, a] = -_TWO * err
    return loss


@njit(nogil=True, cache=True, error_model="numpy")
def a3c_loss(logits, values, actions, returns, beta, dlogits, dvalues, logp, n):
    """The A3C loss of a segment (Algorithm S3), with its gradients.

    With π_i = softmax(z_i), advantage A_i = R_i − V(s_i) (a constant in the policy term) and
    entropy H_i = −Σ_k π_ik log π_ik:

        L = Σ_i [ −A_i log π(a_i|s_i)  −  β H_i  +  ½ (R_i − V(s_i))² ]

        ∂L/∂z_ik = A_i (π_ik − [k = a_i])  +  β π_ik (log π_ik + H_i)
        ∂L/∂V_i  = V_i − R_i

    Descending L is the paper's ascent on log π · A + β H together with descent on ½ A².
    logits (≥n, A), values (≥n, 1) (a 2-D column), returns R (≥n,); dlogits/dvalues written for the
    first n rows; ``logp`` is scratch of length A. Returns (policy_loss, value_loss, entropy), each
    summed over the rows, where policy_loss = −Σ A_i log π(a_i|s_i).
    """
    A = logits.shape[1]
    policy_loss = _ZERO
    value_loss = _ZERO
    entropy = _ZERO
    for i in range(n):
        log_softmax_forward(logits[i], logp)
        h = _ZERO
        for k in range(A):
            h -= np.exp(logp[k]) * logp[k]
        v = values[i, 0]
        adv = np.float32(returns[i]) - v
        a = actions[i]
        for k in range(A):
            p = np.exp(logp[k])
            dlogits[i, k] = adv * p + np.float32(beta) * p * (logp[k] + h)
        dlogits[i, a] -= adv
        dvalues[i, 0] = -adv
        policy_loss -= adv * logp[a]
        value_loss += _HALF * adv * adv
        entropy += h
    return policy_loss, value_loss, entropy
