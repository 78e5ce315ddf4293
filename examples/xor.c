/* XOR with the network from the original question: 2-3-3-1, ReLU, ReLU,
 * sigmoid, binary cross-entropy, trained full-batch with library defaults
 * (default initialisation, Adam with its standard settings).
 *
 *   xor                 train seed 1, print the cost, truth table and a plot
 *   xor --seed N        another seed
 *   xor --sweep [N]     train seeds 0..N-1 (default 200), print the rate
 *   xor --tiny-init     reproduce cause 1: weights randn * 0.001, biases 0
 *   xor --relu-on-output
 *                       reproduce cause 2: ReLU derivative taken on the
 *                       output as `a >= 0` (always true)
 *   xor --bias B        start the ReLU layers' biases at B instead of the
 *                       library's MLP_RELU_BIAS_INIT
 * The options combine, and work with --sweep. */
#include <mlp.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPOCHS 5000
#define PLOT_COLUMNS 60
#define PLOT_ROWS 12

static const float inputs[8] = {0, 0, 0, 1, 1, 0, 1, 1};
static const float targets[4] = {0, 1, 1, 0};

/* The original program's derivative: on the output, where a >= 0 holds for
 * every ReLU output, so the gradient always passes. */
static void relu_backward_on_output(const mlp_activation *self, size_t rows, size_t cols,
                                    const float *z, const float *a, const float *grad_a,
                                    float *grad_z)
{
    (void)self, (void)z;
    for (size_t i = 0; i < rows * cols; i++)
        grad_z[i] = a[i] >= 0.0f ? grad_a[i] : 0.0f;
}

typedef struct options {
    int tiny_init, relu_on_output, sweep, seed, set_bias;
    float bias;
} options;

/* Layout of the parameters (mlp.h, mlp_create): W1 (3x2), b1 (3),
 * W2 (3x3), b2 (3), W3 (1x3), b3 (1): where each layer's biases start. */
static const size_t bias_offset[3] = {6, 18, 24}, bias_count[3] = {3, 3, 1};

/* The original initialisation: every weight randn * 0.001, biases 0. The
 * normals come from a small generator of our own (xorshift64* and
 * Box-Muller) so the figures are the same on every platform. */
static void tiny_init(mlp *net, uint64_t seed)
{
    uint64_t state = seed * 0x9e3779b97f4a7c15u + 1;
    size_t n;
    float *p = mlp_params(net, &n);
    for (size_t i = 0; i < n; i++) {
        double u[2];
        for (int k = 0; k < 2; k++) {
            state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
            u[k] = (double)((state * 0x2545f4914f6cdd1du) >> 11) * 0x1.0p-53;
        }
        p[i] = (float)(0.001 * sqrt(-2.0 * log(1.0 - u[0])) * cos(6.283185307179586 * u[1]));
    }
    for (int l = 0; l < 3; l++)
        memset(p + bias_offset[l], 0, bias_count[l] * sizeof(float));
}

/* What the first step's gradient looks like, layer by layer, and whether it
 * is the true gradient: mlp_gradcheck compares it with finite differences. */
static void report_gradients(mlp *net)
{
    static const size_t weights[3] = {6, 9, 3};
    mlp_status st = mlp_forward(net, 4, inputs, NULL);
    if (st == MLP_OK)
        st = mlp_backward(net, &mlp_bce, targets, NULL);
    if (st != MLP_OK) {
        fprintf(stderr, "first step: %s\n", mlp_strerror(st));
        return;
    }
    const float *g = mlp_grads(net, NULL);
    printf("first-step gradient, mean |dW| per layer:");
    for (int l = 0; l < 3; l++) {
        double sum = 0.0;
        for (size_t i = 0; i < weights[l]; i++)
            sum += fabs(g[i]);
        printf(" %.3g", sum / (double)weights[l]);
        g += weights[l] + bias_count[l];
    }
    mlp_zero_grad(net);
    mlp_gradcheck_result check;
    st = mlp_gradcheck_ex(net, &mlp_bce, 4, inputs, targets, &check);
    if (st != MLP_OK)
        return;
    /* With no gradient large enough to measure, agreement proves nothing. */
    const char *verdict = check.resolved == 0        ? "inconclusive"
                          : check.max_rel_err < 2e-2 ? "correct"
                                                     : "WRONG derivative";
    printf("\ngradient check: max relative error %.2g, %zu of %zu parameters measured (%s)\n\n",
           check.max_rel_err, check.resolved, mlp_param_count(net), verdict);
}

/* Trains one network; stores the cost of every epoch in costs (if not NULL;
 * without it training stops once the cost is below 0.05), the last cost in
 * *cost and the final outputs in out. Returns the number of epochs run, or
 * -1 on a library error (printed). */
static int train(const options *opt, int seed, float *costs, float *cost, float out[4])
{
    mlp_activation relu_bug = mlp_relu;
    relu_bug.name = "relu_on_output";
    relu_bug.backward = relu_backward_on_output;
    const mlp_activation *relu = opt->relu_on_output ? &relu_bug : &mlp_relu;
    const mlp_layer layers[3] = {{3, relu}, {3, relu}, {1, &mlp_sigmoid}};
    const mlp_config cfg = {2, 3, layers, (uint64_t)seed, MLP_INIT_AUTO, NULL};
    const mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    mlp *net;
    mlp_status st = mlp_create(&net, &cfg);
    if (st != MLP_OK) {
        fprintf(stderr, "mlp_create: %s\n", mlp_strerror(st));
        return -1;
    }
    if (opt->tiny_init)
        tiny_init(net, (uint64_t)seed);
    for (int l = 0; opt->set_bias && l < 2; l++)
        for (size_t i = 0; i < bias_count[l]; i++)
            mlp_params(net, NULL)[bias_offset[l] + i] = opt->bias;

    if (costs)
        report_gradients(net);
    int epoch = 0;
    *cost = INFINITY;
    while (st == MLP_OK && epoch < EPOCHS && (costs || *cost >= 0.05f)) {
        st = mlp_forward(net, 4, inputs, out);
        if (st == MLP_OK)
            st = mlp_backward(net, &mlp_bce, targets, cost);
        if (st == MLP_OK)
            st = mlp_step(net, &adam);
        if (costs)
            costs[epoch] = *cost;
        epoch++;
    }
    if (st == MLP_OK)
        st = mlp_predict(net, 4, inputs, out);
    if (st != MLP_OK)
        fprintf(stderr, "training failed: %s\n", mlp_strerror(st));
    mlp_free(net);
    return st == MLP_OK ? epoch : -1;
}

static int converged(float cost, const float out[4])
{
    for (int i = 0; i < 4; i++)
        if ((out[i] > 0.5f) != (targets[i] > 0.5f))
            return 0;
    return cost < 0.05f;
}

/* The cost curve on a log scale, one column per EPOCHS / PLOT_COLUMNS. */
static void plot(const float *costs, int epochs)
{
    double lo = log10(0.001), hi = log10(1.0);
    char grid[PLOT_ROWS][PLOT_COLUMNS + 1];
    memset(grid, ' ', sizeof grid);
    for (int c = 0; c < PLOT_COLUMNS; c++) {
        int epoch = (int)((long)c * epochs / PLOT_COLUMNS);
        double v = log10(fmax(costs[epoch], 1e-3));
        int row = (int)lround((hi - v) / (hi - lo) * (PLOT_ROWS - 1));
        row = row < 0 ? 0 : row >= PLOT_ROWS ? PLOT_ROWS - 1 : row;
        grid[row][c] = '*';
    }
    printf("\ncost (log scale) over %d epochs\n", epochs);
    for (int r = 0; r < PLOT_ROWS; r++) {
        grid[r][PLOT_COLUMNS] = '\0';
        double label = pow(10.0, hi - (hi - lo) * r / (PLOT_ROWS - 1));
        printf("%7.3f |%s\n", label, grid[r]);
    }
    printf("        +");
    for (int c = 0; c < PLOT_COLUMNS; c++)
        putchar('-');
    printf("\n         0%*d\n", PLOT_COLUMNS - 1, epochs);
}

static int run_one(const options *opt)
{
    static float costs[EPOCHS];
    float out[4], cost;
    int epochs = train(opt, opt->seed, costs, &cost, out);
    if (epochs < 0)
        return 1;
    for (int e = 0; e < epochs; e += EPOCHS / 10)
        printf("epoch %5d  cost %.6f\n", e, costs[e]);
    printf("epoch %5d  cost %.6f\n\n", epochs, costs[epochs - 1]);
    printf(" x1 x2 | target | output\n");
    for (int i = 0; i < 4; i++)
        printf("  %.0f  %.0f |   %.0f    | %.4f\n", inputs[2 * i], inputs[2 * i + 1], targets[i],
               out[i]);
    plot(costs, epochs);
    int ok = converged(cost, out);
    printf("\n%s\n", ok ? "converged" : "did not converge");
    return ok ? 0 : 2;
}

static int run_sweep(const options *opt)
{
    int ok = 0;
    for (int seed = 0; seed < opt->sweep; seed++) {
        float out[4], cost;
        if (train(opt, seed, NULL, &cost, out) < 0)
            return 1;
        ok += converged(cost, out);
    }
    printf("converged: %d of %d seeds (%.1f%%) within %d epochs\n", ok, opt->sweep,
           100.0 * ok / opt->sweep, EPOCHS);
    return 0;
}

int main(int argc, char **argv)
{
    options opt = {0, 0, 0, 1, 0, 0.0f};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tiny-init"))
            opt.tiny_init = 1;
        else if (!strcmp(argv[i], "--relu-on-output"))
            opt.relu_on_output = 1;
        else if (!strcmp(argv[i], "--bias") && i + 1 < argc)
            opt.set_bias = 1, opt.bias = strtof(argv[++i], NULL);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            opt.seed = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sweep"))
            opt.sweep = i + 1 < argc && argv[i + 1][0] != '-' ? atoi(argv[++i]) : 200;
        else {
            fprintf(
                stderr,
                "usage: %s [--seed N] [--sweep [N]] [--tiny-init] [--relu-on-output] [--bias B]\n",
                argv[0]);
            return 1;
        }
    }
    return opt.sweep > 0 ? run_sweep(&opt) : run_one(&opt);
}
