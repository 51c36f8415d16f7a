/* The C API in one program: load a model, perforate it to half its conv outputs,
 * compile it for one image on the CPU (and on the GPU when there is one), run it on a
 * fixed input and print the class scores.
 *
 *   cargo build --release -p perforate-capi
 *   cc examples/c/classify.c -Icapi/include -Ltarget/release -lperforate_c \
 *      -Wl,-rpath,target/release -o classify
 *   ./classify fashion_vgg        (a zoo name, an .onnx file or a perforate .json model)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "perforate.h"

static int check(PerforateStatus status, const char *what) {
    if (status != PERFORATE_STATUS_OK) {
        fprintf(stderr, "%s failed (status %d): %s\n", what, (int)status, perforate_last_error());
        return 1;
    }
    return 0;
}

static int run_on(const PerforateModel *model, const PerforateContext *ctx, const char *device) {
    PerforateExecutor *exec = NULL;
    if (check(perforate_compile(model, 1, ctx, &exec), "compile")) return 1;
    size_t in_len = 0, out_len = 0;
    if (check(perforate_executor_lengths(exec, &in_len, &out_len), "lengths")) return 1;
    float *x = malloc(in_len * sizeof(float));
    float *y = malloc(out_len * sizeof(float));
    for (size_t i = 0; i < in_len; i++) x[i] = (float)sin(0.01 * (double)i);
    int failed = check(perforate_run(exec, x, in_len, y, out_len), "run");
    if (!failed) {
        printf("%s:", device);
        for (size_t i = 0; i < out_len; i++) printf(" %.6f", y[i]);
        printf("\n");
    }
    /* A wrong length is an error value with a message, not a crash. */
    if (perforate_run(exec, x, in_len - 1, y, out_len) != PERFORATE_STATUS_SHAPE) failed = 1;
    free(x);
    free(y);
    perforate_executor_free(exec);
    return failed;
}

int main(int argc, char **argv) {
    const char *spec = argc > 1 ? argv[1] : "fashion_vgg";
    PerforateModel *model = NULL;
    if (check(perforate_model_load(spec, &model), "load")) return 1;
    size_t c = 0, h = 0, w = 0, perforated = 0;
    double speedup = 0.0;
    if (check(perforate_model_input(model, &c, &h, &w), "input")) return 1;
    if (check(perforate_model_perforate_all(model, 0.5, 7, &perforated), "perforate")) return 1;
    if (check(perforate_model_speedup(model, &speedup), "speedup")) return 1;
    printf("%s: input %zux%zux%zu, %zu convs perforated, theoretical speedup %.2f\n", spec, c, h, w,
           perforated, speedup);
    int failed = run_on(model, NULL, "cpu");
    PerforateContext *ctx = NULL;
    if (perforate_context_new(&ctx) == PERFORATE_STATUS_OK) {
        failed |= run_on(model, ctx, "gpu");
        perforate_context_free(ctx);
    } else {
        printf("gpu: none (%s)\n", perforate_last_error());
    }
    perforate_model_free(model);
    return failed;
}
