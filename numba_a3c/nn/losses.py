"""Losses of the asynchronous methods and their gradients with respect to the network outputs.

Each kernel takes the head outputs of a segment's rows, writes ∂L/∂(outputs) into the ``delta``
rows that :func:`numba_a3c.nn.network.backward_rows` then backpropagates, and returns the loss.
Everything is a *loss to minimise*; the optimisers descend it.
"""

import numpy as np

from numba_a3c.jit import njit
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
def a3c_loss(logits, values, actions, returns, beta, policy_weight, value_weight, dlogits, dvalues, logp, n):
    """The A3C loss of a segment (Algorithm S3), with its gradients.

    With π_i = softmax(z_i), advantage A_i = R_i − V(s_i) (a constant in the policy term) and
    entropy H_i = −Σ_k π_ik log π_ik, a policy weight k_π and a value weight c_v:

        L = Σ_i [ −k_π A_i log π(a_i|s_i)  −  β H_i  +  c_v ½ (R_i − V(s_i))² ]

        ∂L/∂z_ik = k_π A_i (π_ik − [k = a_i])  +  β π_ik (log π_ik + H_i)
        ∂L/∂V_i  = c_v (V_i − R_i)

    Descending L is the paper's ascent on log π · A + β H together with descent on ½ A² (the
    paper's loss is k_π = c_v = 1; ``--value-weight`` sets c_v, and ``--normalize-value`` without
    ``--normalize-advantage`` sets k_π = σ, so that the policy reads the raw advantage σ·A where
    V and R are in normalised units: :func:`numba_a3c.algorithms.a3c.segment_gradient`).
    logits (≥n, A), values (≥n, 1) (a 2-D column), returns R (≥n,); dlogits/dvalues written for the
    first n rows; ``logp`` is scratch of length A. Returns (policy_loss, value_loss, entropy), each
    summed over the rows and without the weights, policy_loss = −Σ A_i log π(a_i|s_i) and
    value_loss = Σ ½ A_i²: L = k_π policy_loss − β entropy + c_v value_loss.
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
        wadv = np.float32(policy_weight) * adv
        for k in range(A):
            p = np.exp(logp[k])
            dlogits[i, k] = wadv * p + np.float32(beta) * p * (logp[k] + h)
        dlogits[i, a] -= wadv
        dvalues[i, 0] = -np.float32(value_weight) * adv
        policy_loss -= adv * logp[a]
        value_loss += _HALF * adv * adv
        entropy += h
    return policy_loss, value_loss, entropy


# --------------------------------------------------------------------------- continuous actions
LOG_2PI = np.float32(np.log(2.0 * np.pi))
VAR_MIN = np.float32(1e-4)   # σ² never falls below this (a policy that stops exploring cannot learn)


@njit(nogil=True, cache=True, error_model="numpy")
def softplus(s):
    """log(1 + eˢ), computed without overflow for large |s|."""
    return max(s, s * _ZERO) + np.log1p(np.exp(-abs(s)))


@njit(nogil=True, cache=True, error_model="numpy")
def gaussian_a3c_loss(mu, s, values, actions, returns, beta, policy_weight, value_weight, dmu, ds, dvalues, n):
    """The A3C loss for a Gaussian policy over D continuous action dimensions (the paper's
    continuous-control head: a linear mean μ and a softplus variance σ² per dimension).

    With σ²_ik = softplus(s_ik) + VAR_MIN, advantage A_i = R_i − V(s_i) (a constant in the policy
    term), log N(a; μ, σ²) = −(a − μ)²/(2σ²) − ½ log(2πσ²) and entropy H = ½(log(2πσ²) + 1) per
    dimension (the policy's density is the product over dimensions, so both add up over k):

        L = Σ_i [ −k_π A_i Σ_k log N(a_ik; μ_ik, σ²_ik)  −  β Σ_k H_ik  +  c_v ½ (R_i − V(s_i))² ]

        ∂L/∂μ_ik = −k_π A_i (a_ik − μ_ik) / σ²_ik
        ∂L/∂σ²_ik = −k_π A_i [ (a_ik − μ_ik)² / (2σ⁴_ik) − 1 / (2σ²_ik) ]  −  β / (2σ²_ik)
        ∂L/∂s_ik = ∂L/∂σ²_ik · sigmoid(s_ik)          (softplus′ = sigmoid)
        ∂L/∂V_i = c_v (V_i − R_i)

    with the policy weight k_π and the value weight c_v of :func:`a3c_loss`.

    mu, s (≥n, D); values (≥n, 1); actions (≥n, D) the sampled, UNCLIPPED actions; returns R
    (≥n,). dmu, ds, dvalues written for the first n rows. Returns (policy_loss, value_loss,
    entropy), each summed over the rows (and dimensions) and without the weights, as :func:`a3c_loss` does.
    """
    D = mu.shape[1]
    policy_loss = _ZERO
    value_loss = _ZERO
    entropy = _ZERO
    for i in range(n):
        v = values[i, 0]
        adv = np.float32(returns[i]) - v
        wadv = np.float32(policy_weight) * adv
        for k in range(D):
            var = softplus(s[i, k]) + VAR_MIN
            diff = actions[i, k] - mu[i, k]
            log_var = np.log(var)
            logp = -_HALF * (diff * diff / var + log_var + LOG_2PI)
            h = _HALF * (log_var + LOG_2PI + np.float32(1.0))
            dvar = -wadv * (_HALF * diff * diff / (var * var) - _HALF / var) - np.float32(beta) * _HALF / var
            dmu[i, k] = -wadv * diff / var
            ds[i, k] = dvar / (np.float32(1.0) + np.exp(-s[i, k]))
            policy_loss -= adv * logp
            entropy += h
        dvalues[i, 0] = -np.float32(value_weight) * adv
        value_loss += _HALF * adv * adv
    return policy_loss, value_loss, entropy
