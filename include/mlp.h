/*
 * libmlp — multilayer perceptrons in C11: create, train, run.
 *
 * A network is a stack of dense layers, each followed by an activation. You
 * create one from an mlp_config, run mlp_forward on a batch, mlp_backward with
 * a loss and targets, and mlp_step with an optimizer; mlp_predict runs a
 * trained network. Gradients are exact (check them with mlp_gradcheck),
 * initialisation is chosen from each layer's activation, and every error is a
 * status: the library never prints, asserts on input, aborts or exits.
 *
 * Conventions
 * - Data is float, row-major: a batch of n samples with k features is n*k
 *   floats, sample after sample.
 * - Every fallible function returns mlp_status (MLP_OK is 0). On any error the
 *   objects passed in are left as they were: parameters, gradients and
 *   optimizer state are never half-updated.
 * - Ownership: what mlp_create returns belongs to the caller and is released
 *   with mlp_free. Pointers the library returns into a network (mlp_params,
 *   mlp_grads) live as long as the network. Vtables and arrays passed in
 *   (activations, losses, layer arrays) are read during the call; activation
 *   vtables must outlive the network that uses them.
 * - Threads: the library has no global mutable state. Different networks may
 *   be used from different threads freely. One network may be read by many
 *   threads at once only through the const functions (mlp_predict,
 *   mlp_inputs, ...); anything taking a non-const mlp * needs exclusive
 *   access. Built with -Dopenmp=enabled, the library shares the products of
 *   large batches and the optimizer's passes over large layers among OpenMP
 *   threads (OMP_NUM_THREADS) inside a call; results are the same for any
 *   thread count.
 * - Memory comes from the mlp_allocator given at creation (default
 *   malloc/free).
 */
#ifndef MLP_H
#define MLP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* MLP_API marks exported symbols; the library is built with hidden
 * visibility so nothing else leaks. MLP_STATIC is for static consumers on
 * Windows, where dllimport would be wrong. */
#if defined(_WIN32) && !defined(MLP_STATIC)
#ifdef MLP_BUILDING
#define MLP_API __declspec(dllexport)
#else
#define MLP_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define MLP_API __attribute__((visibility("default")))
#else
#define MLP_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

#define MLP_VERSION_MAJOR 0
#define MLP_VERSION_MINOR 1
#define MLP_VERSION_PATCH 0

/* The version of the library actually linked, "MAJOR.MINOR.PATCH". Static
 * string; thread-safe. Compare with the macros to detect a header/library
 * mismatch. */
MLP_API const char *mlp_version(void);

/* ------------------------------------------------------------------------ */
/* Status codes (values are pinned: never renumbered)                        */
/* ------------------------------------------------------------------------ */

typedef enum mlp_status {
    MLP_OK = 0,
    MLP_ERR_INVALID = 1,    /* bad argument: NULL, zero or oversized shape, mismatch */
    MLP_ERR_NOMEM = 2,      /* allocation failed; nothing changed */
    MLP_ERR_IO = 3,         /* open/read/write/rename failed; errno kept */
    MLP_ERR_FORMAT = 4,     /* model data corrupt, truncated, wrong version/checksum */
    MLP_ERR_ACTIVATION = 5, /* model names an activation no resolver knows */
    MLP_ERR_NONFINITE = 6,  /* NaN/Inf in input, target, loss or gradient; no update */
    MLP_ERR_STATE = 7       /* call out of order, e.g. backward without forward */
} mlp_status;

/* A stable English sentence for a status; an unknown value gives
 * "unknown status". Static string; thread-safe. */
MLP_API const char *mlp_strerror(mlp_status status);

/* ------------------------------------------------------------------------ */
/* Limits. Each bounds what a config (or later a model file) may ask for; a  */
/* request beyond one is refused with MLP_ERR_INVALID, never attempted.      */
/* ------------------------------------------------------------------------ */

/* Deeper than any MLP trained in practice; bounds per-layer bookkeeping. */
#define MLP_MAX_LAYERS 1024
/* Widest layer (or input): ~1M units; beyond that a dense layer is not small. */
#define MLP_MAX_UNITS (1u << 20)
/* Total weights and biases: 2^30 floats are 4 GiB, per buffer. */
#define MLP_MAX_PARAMS ((size_t)1 << 30)
/* Samples in one batch. batch * (inputs + the units of all layers) must also
 * be within MLP_MAX_PARAMS: that is the training cache of a batch. */
#define MLP_MAX_BATCH ((size_t)1 << 24)

/* ------------------------------------------------------------------------ */
/* Allocator                                                                */
/* ------------------------------------------------------------------------ */

/* Per-network allocator (no global one). alloc returns memory aligned for
 * any float/double use, or NULL on failure; free accepts NULL. Both get
 * `opaque` back. If mlp_predict is called from several threads, the
 * allocator must be thread-safe (malloc is). */
typedef struct mlp_allocator {
    void *(*alloc)(void *opaque, size_t size);
    void (*free)(void *opaque, void *ptr);
    void *opaque;
} mlp_allocator;

/* ------------------------------------------------------------------------ */
/* Activations: the pluggable part                                          */
/* ------------------------------------------------------------------------ */

/* Weight initialisation schemes. Weights are drawn from a zero-mean normal
 * distribution with variance:
 *   MLP_INIT_XAVIER  var = 2 / (fan_in + fan_out)   Glorot & Bengio 2010
 *   MLP_INIT_HE      var = 2 / fan_in               He et al. 2015
 * MLP_INIT_AUTO (in mlp_config) takes each layer's activation's preference;
 * an activation with init MLP_INIT_AUTO gets Xavier. Biases start at 0,
 * except in MLP_INIT_HE layers (the ReLU family: relu, leaky_relu, elu,
 * gelu, silu; or any layer when mlp_config.init forces He), whose biases
 * start at MLP_RELU_BIAS_INIT. */
typedef enum mlp_init { MLP_INIT_AUTO = 0, MLP_INIT_XAVIER = 1, MLP_INIT_HE = 2 } mlp_init;

/* Initial bias of He-initialised (ReLU-family) layers. A small positive bias
 * keeps each unit active on more inputs at the start, so fewer units begin
 * dead (zero output and zero gradient on every sample). 0.1 is the
 * conventional value, not one fitted here; measured on the 2-3-3-1 ReLU XOR
 * network (docs/xor.md), bias 0 converges for 40% of seeds and 0.1 for 81%. */
#define MLP_RELU_BIAS_INIT 0.1f

#define MLP_ACTIVATION_ABI 1u

/* An activation as a vtable. Both functions work on a whole batch, row-major
 * (rows samples x cols units), so row-wise activations such as softmax fit.
 *
 * forward:  a = f(z). Must not assume z and a alias, or that they don't.
 * backward: grad_z = dL/dz given grad_a = dL/da. It receives BOTH the
 *           pre-activation z and the output a: a derivative is never forced
 *           to be recovered from the output (the classic bug: ReLU's
 *           derivative written on the output as `a >= 0`, always true).
 *           grad_z never aliases the inputs.
 *
 * A vtable with a NULL forward, NULL backward, NULL name, an init that is
 * not an mlp_init, or an abi_version other than MLP_ACTIVATION_ABI is
 * refused with MLP_ERR_INVALID: the library never guesses a derivative. Check a new activation with
 * mlp_gradcheck. Functions are called from whatever thread calls the library and must be reentrant.
 */
typedef struct mlp_activation mlp_activation;
struct mlp_activation {
    uint32_t abi_version; /* MLP_ACTIVATION_ABI: lets fields be appended later */
    const char *name;     /* unique; will be written into model files */
    void (*forward)(const mlp_activation *self, size_t rows, size_t cols, const float *z, float *a);
    void (*backward)(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                     const float *a, const float *grad_a, float *grad_z);
    int init;         /* preferred mlp_init for weights feeding this activation */
    const void *data; /* optional constants for the implementation */
};

/* Built-in activations. All are stable for any finite z (sigmoid, softplus
 * and friends give no inf/NaN even at |z| = 1e4).
 *   mlp_identity    z
 *   mlp_sigmoid     1 / (1 + e^-z)
 *   mlp_tanh        tanh z
 *   mlp_relu        max(z, 0); derivative 0 at z <= 0                  (He)
 *   mlp_leaky_relu  z > 0 ? z : 0.01 z                                 (He)
 *   mlp_elu         z > 0 ? z : e^z - 1                                (He)
 *   mlp_softplus    log(1 + e^z)
 *   mlp_gelu        z * Phi(z), exact (erf) form, Hendrycks & Gimpel 2016 (He)
 *   mlp_silu        z * sigmoid(z), Elfwing et al. 2018                (He)
 *   mlp_softmax     e^z_i / sum_j e^z_j per row, computed after subtracting
 *                   the row max */
MLP_API extern const mlp_activation mlp_identity;
MLP_API extern const mlp_activation mlp_sigmoid;
MLP_API extern const mlp_activation mlp_tanh;
MLP_API extern const mlp_activation mlp_relu;
MLP_API extern const mlp_activation mlp_leaky_relu;
MLP_API extern const mlp_activation mlp_elu;
MLP_API extern const mlp_activation mlp_softplus;
MLP_API extern const mlp_activation mlp_gelu;
MLP_API extern const mlp_activation mlp_silu;
MLP_API extern const mlp_activation mlp_softmax;

/* ------------------------------------------------------------------------ */
/* Losses                                                                   */
/* ------------------------------------------------------------------------ */

#define MLP_LOSS_ABI 1u

/* A loss as a vtable. Values are accumulated in double.
 *
 * loss:        returns the loss of outputs y against target (both rows x
 *              cols) and, if grad_y is not NULL, writes dL/dy into it (the
 *              library always passes a buffer; NULL is for direct calls).
 * fused_activation, loss_logits (optional, both or neither): when the
 *              network's output activation is exactly `fused_activation`
 *              (the same vtable object), the library calls loss_logits with
 *              the output layer's pre-activation z instead, and it returns
 *              the same loss and writes dL/dz. This is how sigmoid+BCE and
 *              softmax+cross-entropy stay exact and finite for any logit.
 * A vtable with NULL name or loss, only one of the fused pair, or an
 * abi_version other than MLP_LOSS_ABI is refused with MLP_ERR_INVALID. */
typedef struct mlp_loss mlp_loss;
struct mlp_loss {
    uint32_t abi_version; /* MLP_LOSS_ABI */
    const char *name;
    double (*loss)(const mlp_loss *self, size_t rows, size_t cols, const float *y,
                   const float *target, float *grad_y);
    const mlp_activation *fused_activation;
    double (*loss_logits)(const mlp_loss *self, size_t rows, size_t cols, const float *z,
                          const float *target, float *grad_z);
    const void *data;
};

/* Built-in losses (N = rows, C = cols):
 *   mlp_mse            mean over all N*C elements of (y - t)^2
 *   mlp_bce            binary cross-entropy, mean over all N*C elements of
 *                      -(t log y + (1 - t) log(1 - y)); fused with
 *                      mlp_sigmoid (computed from logits: dL/dz = (p - t)/NC).
 *                      Unfused, y is clamped to [1e-7, 1 - 1e-7], where
 *                      the loss is flat and its gradient 0: saturated
 *                      outputs learn only through the fused pairing.
 *   mlp_cross_entropy  categorical cross-entropy, mean over rows of
 *                      -sum_c t_c log y_c (targets one-hot or probabilities);
 *                      fused with mlp_softmax (log-sum-exp of logits:
 *                      dL/dz = (p * sum_c t_c - t)/N, i.e. (p - t)/N).
 *                      Unfused, y is clamped to at least 1e-7 (gradient 0
 *                      there, as for BCE). */
MLP_API extern const mlp_loss mlp_mse;
MLP_API extern const mlp_loss mlp_bce;
MLP_API extern const mlp_loss mlp_cross_entropy;

/* ------------------------------------------------------------------------ */
/* Creating a network                                                       */
/* ------------------------------------------------------------------------ */

typedef struct mlp mlp; /* opaque */

/* One dense layer: `units` outputs, each followed by `activation`. */
typedef struct mlp_layer {
    size_t units;
    const mlp_activation *activation;
} mlp_layer;

typedef struct mlp_config {
    size_t inputs;                  /* features per sample, 1..MLP_MAX_UNITS */
    size_t n_layers;                /* 1..MLP_MAX_LAYERS; the last is the output */
    const mlp_layer *layers;        /* n_layers entries; copied by mlp_create */
    uint64_t seed;                  /* same seed -> bit-identical initial weights */
    int init;                       /* mlp_init; MLP_INIT_AUTO: per activation */
    const mlp_allocator *allocator; /* copied; NULL: malloc/free */
} mlp_config;

/* Creates a network with freshly initialised parameters.
 * Parameter layout (see mlp_params): layer after layer, each its weights W
 * (units x fan_in, row-major: W[o][i] connects input i to unit o) then its
 * biases b (units).
 * On success *out owns the network; release it with mlp_free.
 * Returns MLP_ERR_INVALID (out or cfg NULL, zero or oversized shape, a
 * layer without activation, an activation refused as described above, an
 * unknown init, an allocator with only one of alloc/free), MLP_ERR_NOMEM.
 * On error *out is untouched. Thread-safe. */
MLP_API mlp_status mlp_create(mlp **out, const mlp_config *cfg);

/* Releases a network and everything it owns. mlp_free(NULL) does nothing.
 * No other call may be using the network. */
MLP_API void mlp_free(mlp *net);

/* Shape queries; 0 for a NULL net. Thread-safe on a const network. */
MLP_API size_t mlp_inputs(const mlp *net);
MLP_API size_t mlp_outputs(const mlp *net);
MLP_API size_t mlp_param_count(const mlp *net);

/* ------------------------------------------------------------------------ */
/* Training                                                                 */
/* ------------------------------------------------------------------------ */

/* Training forward pass over `batch` samples x (batch x inputs). Keeps what
 * backward needs (a copy of x, every layer's z and a) inside the network, so
 * x may be reused at once. If y is not NULL, the outputs (batch x outputs)
 * are written there.
 * Returns MLP_ERR_INVALID (NULL net or x, batch 0 or > MLP_MAX_BATCH),
 * MLP_ERR_NONFINITE (x holds NaN/Inf, or the outputs overflow), MLP_ERR_NOMEM
 * (growing the workspace for a larger batch failed). On error y is untouched
 * and no forward is pending (a following backward is MLP_ERR_STATE);
 * parameters, gradients and optimizer state never change.
 * Training calls (forward, backward, step, train_step, zero_grad, gradcheck) need the
 * network to themselves: not thread-safe on one network. */
MLP_API mlp_status mlp_forward(mlp *net, size_t batch, const float *x, float *y);

/* Backpropagates `loss` for the pending forward batch against target
 * (batch x outputs) and ADDS dL/dparams to the gradient buffer, which
 * mlp_step applies and clears. (After mlp_create, mlp_step or mlp_zero_grad
 * the buffer holds zeros, and the first backward writes it rather than adds:
 * values written into it through mlp_grads before that backward are
 * dropped, and a first backward that fails leaves zeros there.) The loss
 * is the batch mean (see the losses), so gradients are
 * those of the mean. If loss_out is not NULL the loss value is stored there.
 * Each forward allows one backward.
 * Returns MLP_ERR_INVALID (NULL net, loss or target; refused loss vtable),
 * MLP_ERR_STATE (no pending forward), MLP_ERR_NONFINITE (NaN/Inf in target,
 * loss or any gradient), MLP_ERR_NOMEM. On error gradients and *loss_out are
 * untouched and the pending forward is kept. */
MLP_API mlp_status mlp_backward(mlp *net, const mlp_loss *loss, const float *target,
                                float *loss_out);

/* Like mlp_backward, from a caller-computed dL/dy (batch x outputs), for
 * custom losses or chaining networks. Fused losses do not apply here: the
 * output activation's backward is always used.
 * Returns MLP_ERR_INVALID, MLP_ERR_STATE, MLP_ERR_NONFINITE, MLP_ERR_NOMEM
 * as mlp_backward. */
MLP_API mlp_status mlp_backward_grad(mlp *net, const float *grad_y);

/* Clears the gradient buffer without stepping. Returns MLP_ERR_INVALID for
 * a NULL net. */
MLP_API mlp_status mlp_zero_grad(mlp *net);

/* ------------------------------------------------------------------------ */
/* Optimizers                                                               */
/* ------------------------------------------------------------------------ */

typedef enum mlp_optimizer_kind {
    MLP_OPT_SGD = 0,
    MLP_OPT_MOMENTUM = 1,
    MLP_OPT_NESTEROV = 2,
    MLP_OPT_RMSPROP = 3,
    MLP_OPT_ADAM = 4,
    MLP_OPT_ADAMW = 5
} mlp_optimizer_kind;

/* An optimizer is a plain description; its state (moments, step count)
 * lives in the network. With g the gradient after clipping, w a parameter,
 * lr the learning rate, wd weight_decay, t the step number from 1:
 *   SGD       g += wd w;  w -= lr g
 *   MOMENTUM  g += wd w;  v = mu v + g;  w -= lr v
 *   NESTEROV  g += wd w;  v = mu v + g;  w -= lr (g + mu v)
 *             (Sutskever et al. 2013, in PyTorch's form)
 *   RMSPROP   g += wd w;  s = rho s + (1 - rho) g^2;  w -= lr g / (sqrt(s) + eps)
 *             (Tieleman & Hinton 2012)
 *   ADAM      g += wd w;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *             w -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 *             (Kingma & Ba 2015, Algorithm 1)
 *   ADAMW     w -= lr wd w (decoupled), then ADAM with no wd in g
 *             (Loshchilov & Hutter 2019)
 * Clipping: if clip_norm > 0 and the L2 norm of all gradients together
 * exceeds it, every gradient is scaled by clip_norm / norm first.
 * State starts at zero on the first step; stepping with a different kind
 * than the previous step restarts it. */
typedef struct mlp_optimizer {
    mlp_optimizer_kind kind;
    double learning_rate; /* in (0, 1e6] */
    double momentum;      /* MOMENTUM, NESTEROV: mu in [0, 1) */
    double beta1, beta2;  /* ADAM, ADAMW: each in [0, 1) */
    double rho;           /* RMSPROP: in [0, 1) */
    double epsilon;       /* RMSPROP, ADAM, ADAMW: in (0, 1] */
    double weight_decay;  /* in [0, 1e6]; L2 (coupled), decoupled for ADAMW */
    double clip_norm;     /* in (0, 1e30]: global gradient-norm clip; 0: off */
} mlp_optimizer;

/* Documented defaults, for each kind (Adam's and AdamW's as their papers
 * and PyTorch; RMSProp's as Tieleman & Hinton's lecture; 0.01 and 0.9 the
 * customary SGD settings):
 *   SGD       lr 0.01
 *   MOMENTUM  lr 0.01, momentum 0.9
 *   NESTEROV  lr 0.01, momentum 0.9
 *   RMSPROP   lr 0.001, rho 0.9, eps 1e-8
 *   ADAM      lr 0.001, betas 0.9 / 0.999, eps 1e-8
 *   ADAMW     lr 0.001, betas 0.9 / 0.999, eps 1e-8, weight_decay 0.01
 * Every kind: no weight decay (but AdamW), no clipping. Fields a kind does
 * not use are still set to these values. An unknown kind gives the SGD
 * defaults with that kind, which mlp_step refuses. Thread-safe. */
MLP_API mlp_optimizer mlp_optimizer_default(mlp_optimizer_kind kind);

/* Applies the accumulated gradients with `opt`, then clears them. Ends any
 * pending forward (its cached activations no longer match the weights).
 * Returns MLP_ERR_INVALID (NULL argument, unknown kind, a hyperparameter
 * the kind uses outside its range above, or NaN), MLP_ERR_STATE (no
 * backward since the last step or mlp_zero_grad), MLP_ERR_NONFINITE (a
 * gradient is NaN/Inf, or the update would overflow a weight or a moment —
 * clip_norm prevents the latter), MLP_ERR_NOMEM (first step of a kind that
 * needs state). On error nothing changes: no weight, gradient, moment or
 * step count is updated (the gradients stay pending). */
MLP_API mlp_status mlp_step(mlp *net, const mlp_optimizer *opt);

/* One whole training step on a batch, in one call: the same results, bit
 * for bit, as
 *     mlp_forward(net, batch, x, NULL);
 *     mlp_backward(net, loss, target, loss_out);
 *     mlp_step(net, opt);
 * with the arguments checked once, and all or nothing: on any error
 * parameters, gradients, optimizer state and *loss_out are untouched, and
 * no forward is pending. With plain SGD (no clip_norm) it is faster than
 * the three calls: each layer's parameters take their step as soon as
 * their gradients are known (for a batch, in the product that computes
 * them, block by block; at batch 1, for layers of more than 4096 weights,
 * straight from dz and x), and one sample through layers of at most 4096
 * weights each goes forward, backward and steps without a call per layer.
 * x is read during the call only, not copied (unless it lies in the
 * network's own parameters or gradients).
 * Where the loss is fused with a softmax or sigmoid output, that
 * activation is not computed (nothing reads it).
 * It does not combine with gradients accumulated by mlp_backward: call
 * mlp_step or mlp_zero_grad first. The gradient buffer holds zeros after
 * it, as after mlp_step, except that values written into it through
 * mlp_grads while no gradients were pending are not kept: after the call,
 * whether it succeeds or fails, each such value is either still there or
 * zero (the fused steps do not touch the buffer of a layer they step
 * straight from dz and x).
 * Returns MLP_ERR_INVALID (what the three calls would refuse; all the
 * arguments are checked first, so a bad optimizer is reported even when
 * the data would fail first in the three calls), MLP_ERR_STATE (gradients
 * are pending), MLP_ERR_NONFINITE (NaN/Inf in x, target, the outputs, loss
 * or gradients, or an update that would overflow), MLP_ERR_NOMEM (growing
 * the workspace, optimizer state, or the step's copy of the parameters). */
MLP_API mlp_status mlp_train_step(mlp *net, size_t batch, const float *x, const mlp_loss *loss,
                                  const float *target, const mlp_optimizer *opt, float *loss_out);

/* Drops the optimizer state (moments and step count) and frees its memory:
 * the next step starts fresh, and mlp_save then writes weights only.
 * Returns MLP_ERR_INVALID for a NULL net. */
MLP_API mlp_status mlp_reset_optimizer(mlp *net);

/* ------------------------------------------------------------------------ */
/* Inference                                                                */
/* ------------------------------------------------------------------------ */

/* Computes outputs y (batch x outputs) for x (batch x inputs), exactly as
 * mlp_forward would, without touching the network: no hidden state, safe to
 * call from many threads on one network (with a thread-safe allocator), as
 * long as no training call runs on it at the same time.
 * Small batches use the stack; larger ones allocate a workspace per call.
 * y may overlap x (outputs written over the inputs).
 * Returns MLP_ERR_INVALID (NULL argument, batch 0 or > MLP_MAX_BATCH),
 * MLP_ERR_NONFINITE (x holds NaN/Inf: y is untouched; or an output
 * overflowed: y holds the outputs), MLP_ERR_NOMEM. */
MLP_API mlp_status mlp_predict(const mlp *net, size_t batch, const float *x, float *y);

/* ------------------------------------------------------------------------ */
/* Direct access                                                            */
/* ------------------------------------------------------------------------ */

/* The parameters (layout: see mlp_create) and the gradient buffer, each one
 * contiguous array of mlp_param_count(net) floats, owned by the network and
 * valid until mlp_free. Write them to set weights, run a custom optimizer,
 * or all-reduce gradients between processes (after the backward: see
 * mlp_backward). *count receives the length if count is not NULL. NULL net
 * gives NULL (and *count = 0). Writing needs the network to yourself;
 * reading is safe alongside mlp_predict. */
MLP_API float *mlp_params(mlp *net, size_t *count);
MLP_API float *mlp_grads(mlp *net, size_t *count);

/* ------------------------------------------------------------------------ */
/* Gradient checking                                                        */
/* ------------------------------------------------------------------------ */

/* Compares mlp_backward's gradient on this batch with finite differences
 * of the loss, parameter by parameter, and stores the largest relative
 * error in *max_rel_err:
 *     err_i = |analytic_i - numeric_i| / max(|analytic_i|, |numeric_i|, tau_i)
 *     tau_i = max(1e-3 * max_j |analytic_j|, 1024 * FLT_EPSILON * |L| / step_i)
 * The floor tau_i is what float arithmetic can resolve: entries a thousand
 * times smaller than the largest gradient, or differences below the float
 * rounding of the loss L over the step, are compared on that scale instead
 * of counting as error.
 * Reading it: correct derivatives give below 2e-2 (typically 1e-4 to 1e-2);
 * a wrong one typically gives 0.2 to 2. If no gradient entry was large
 * enough to measure (an all-zero gradient, or one below float resolution,
 * as tiny weights give), *max_rel_err is NaN — which fails any `err < tol`
 * test, since agreement there would prove nothing. Check your own
 * activations on a few random batches in which some pre-activations are
 * negative; mlp_gradcheck_ex tells how much was measured.
 * Method: each parameter w is moved by +-h and +-h/2, h = 1e-2 * max(1, |w|)
 * (as representable in float), and the two central differences combined
 * by Richardson extrapolation, which cancels the O(h^2) error. If the loss
 * is not smooth within the step — a pre-activation of a layer whose
 * activation's derivative jumps at 0 (ReLU) changes sign, or the two
 * differences disagree (a clamp, a kink elsewhere) — the step is retried
 * ten and a hundred times smaller, and the parameter skipped if it still
 * is not.
 * Costs four forward passes per parameter: meant for small networks.
 * Leaves parameters, accumulated gradients and optimizer state exactly as
 * they were; ends any pending forward. Not thread-safe on one network.
 * Returns MLP_ERR_INVALID (NULL argument, refused loss, bad batch),
 * MLP_ERR_NONFINITE (NaN/Inf in x, target, a loss or a gradient),
 * MLP_ERR_NOMEM (it allocates about two parameter-sized buffers and a
 * batch-sized workspace, and may grow the training cache as mlp_forward). */
MLP_API mlp_status mlp_gradcheck(mlp *net, const mlp_loss *loss, size_t batch, const float *x,
                                 const float *target, double *max_rel_err);

/* What mlp_gradcheck_ex found. */
typedef struct mlp_gradcheck_result {
    double max_rel_err;  /* as mlp_gradcheck (NaN if resolved is 0) */
    size_t worst_param;  /* index (mlp_params layout) of that error */
    size_t checked;      /* parameters compared */
    size_t resolved;     /* of those, how many had a gradient clearly above
                            the float rounding of the loss (1/16 of tau_i's
                            second term): the others agree only in being
                            too small to see */
    size_t skipped;      /* parameters whose every step met a kink */
    double max_abs_grad; /* largest |analytic| entry; 0: nothing was tested */
} mlp_gradcheck_result;

/* mlp_gradcheck with the whole finding. A check is only as good as what it
 * covered: no resolved parameter means the gradient is too small for float
 * differences to measure (tiny weights do that); many skipped ones mean
 * pre-activations sit within the step of a kink; max_abs_grad 0 means the
 * gradient is all zeros. Same arguments, effects and statuses. */
MLP_API mlp_status mlp_gradcheck_ex(mlp *net, const mlp_loss *loss, size_t batch, const float *x,
                                    const float *target, mlp_gradcheck_result *result);

/* ------------------------------------------------------------------------ */
/* Model files                                                              */
/* ------------------------------------------------------------------------ */

/* A model file holds the shapes, the activation names, the parameters and,
 * if the network has any, the optimizer state and step count, so training
 * resumes exactly where it stopped (accumulated gradients and a pending
 * forward are not saved). It is little-endian on every platform, versioned,
 * and ends with a CRC-32 of everything before it; docs/model-format.md
 * specifies it byte by byte. A file written by any version of libmlp is
 * read by every later one; a newer format is refused with MLP_ERR_FORMAT. */

/* The longest activation name a model file may hold. */
#define MLP_MAX_NAME 64

#define MLP_LOAD_OPTIONS_ABI 1u

typedef struct mlp_load_options {
    uint32_t abi_version;           /* MLP_LOAD_OPTIONS_ABI */
    const mlp_allocator *allocator; /* for the loaded network; NULL: malloc/free */
    /* Maps an activation name from the file to a vtable, for networks with
     * user-defined activations; asked first, for every layer. Returning
     * NULL falls back to the built-ins (mlp_activation_by_name). May be
     * NULL. The vtable must outlive the loaded network. */
    const mlp_activation *(*resolve)(void *opaque, const char *name);
    void *resolve_opaque;
} mlp_load_options;

/* The built-in activation called `name` ("relu", "softmax", ...), or NULL.
 * Thread-safe. */
MLP_API const mlp_activation *mlp_activation_by_name(const char *name);

/* Writes the network to `path` atomically: a temporary file in the same
 * directory is written, flushed and fsync'ed, renamed over `path`, and the
 * directory is fsync'ed. On any failure the previous file at `path` is
 * untouched and no temporary file is left behind.
 * Returns MLP_ERR_INVALID (NULL argument, empty path), MLP_ERR_IO (any
 * file operation failed; errno is that of the failing call), MLP_ERR_NOMEM.
 * Reads the network only: safe alongside mlp_predict on the same network. */
MLP_API mlp_status mlp_save(const mlp *net, const char *path);

/* Loads a network saved by mlp_save / mlp_save_buffer. opt may be NULL.
 * Every count and size is checked against the MLP_MAX_* limits before
 * anything is allocated, and every read is bounds-checked: a corrupt,
 * truncated or forged file cannot cause a crash or a huge allocation.
 * On success *out owns a new network (release with mlp_free); on error
 * *out is untouched and nothing is leaked.
 * Returns MLP_ERR_INVALID (NULL out or path, empty path, bad options, a resolver
 * returning a refused vtable), MLP_ERR_IO (open/read failed; errno kept),
 * MLP_ERR_FORMAT (not a model file, corrupt, truncated, checksum mismatch,
 * newer format, non-finite parameters), MLP_ERR_ACTIVATION (a name nothing
 * resolves), MLP_ERR_NOMEM. Thread-safe. */
MLP_API mlp_status mlp_load(mlp **out, const char *path, const mlp_load_options *opt);

/* The same format in memory. With buf NULL only the size is computed. The
 * size is always stored in *len. If cap is too small, returns
 * MLP_ERR_INVALID with buf untouched. Returns MLP_ERR_INVALID also for a
 * NULL net or len. Reads the network only. */
MLP_API mlp_status mlp_save_buffer(const mlp *net, void *buf, size_t cap, size_t *len);

/* Loads from `len` bytes at buf, exactly as mlp_load (the bytes must be the
 * whole model, nothing after it). Never reads outside [buf, buf + len). */
MLP_API mlp_status mlp_load_buffer(mlp **out, const void *buf, size_t len,
                                   const mlp_load_options *opt);

#ifdef __cplusplus
}
#endif

#endif /* MLP_H */
