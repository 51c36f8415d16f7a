// unary: out[i] = f(x[i]), f chosen by params.op (`network::Unary::code`, whose `apply` is
// the definition this file mirrors) with its constants alpha and beta.
//
// Bindings (CPU twin `cpu::unary` takes them in this order):
//   0 params  uniform  Params (Rust: `params::UnaryParams`)
//   1 input   storage  f32 [len]
//   2 out     storage  f32 [len]
// Dispatch (`gpu::kernels::unary`): 1-D over len (`kernels::linear_workgroups`).

struct Params {
    len: u32,
    op: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// The series below 0.5, Abramowitz & Stegun 7.1.26 above, as `network::elementwise::erf`.
fn erf_approx(x: f32) -> f32 {
    if abs(x) < 0.5 {
        let z = x * x;
        let series = 1.0 - z * (1.0 / 3.0 - z * (0.1 - z * (1.0 / 42.0 - z * (1.0 / 216.0 - z / 1320.0))));
        return 1.1283791671 * x * series;
    }
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let poly = t * (0.2548296 + t * (-0.28449674 + t * (1.4214137 + t * (-1.4531521 + t * 1.0614054))));
    let y = 1.0 - poly * exp(-x * x);
    return select(y, -y, x < 0.0);
}

fn power(x: f32, p: f32) -> f32 {
    if is_nan(x) {
        return x; // pow of a NaN is implementation-defined (0 on some drivers)
    }
    if p == 2.0 {
        return x * x;
    }
    let m = pow(abs(x), p);
    if x >= 0.0 {
        return m;
    }
    if floor(p) != p {
        return bitcast<f32>(0x7fc00000u); // NaN: a negative base to a fractional power
    }
    return select(m, -m, abs(p) % 2.0 == 1.0);
}

fn apply(x: f32) -> f32 {
    let a = params.alpha;
    let b = params.beta;
    switch params.op {
        case 0u: { return 1.0 / (1.0 + exp(-x)); }
        case 1u: { return clamp_keep_nan(a * x + b, 0.0, 1.0); }
        case 2u: { return x * clamp_keep_nan(x / 6.0 + 0.5, 0.0, 1.0); }
        case 3u: { return tanh(x); }
        case 4u: { return select(a * x, x, x >= 0.0); }
        case 5u: { return select(a * (exp(x) - 1.0), x, x > 0.0); }
        case 6u: { return erf_approx(x); }
        case 7u: { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678)); }
        case 8u: { return 0.5 * x * (1.0 + tanh(0.7978846 * (x + 0.044715 * x * x * x))); }
        case 9u: { return exp(x); }
        case 10u: { return log(x); }
        case 11u: { return sqrt(x); }
        case 12u: { return -x; }
        case 13u: { return abs(x); }
        case 14u: { return 1.0 / x; }
        case 15u: { return max(x, 0.0) + log(1.0 + exp(-abs(x))); }
        case 17u: { return x / (1.0 + exp(-x)); }
        case 18u: { return select(0.0, 1.0, x > a); }
        case 19u: { return select(0.0, 1.0, x < a); }
        case 20u: { return select(0.0, 1.0, x == a); }
        case 21u: { return select(0.0, 1.0, x >= a); }
        case 22u: { return select(0.0, 1.0, x <= a); }
        default: { return power(x, a); }
    }
}

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * 256u;
    if i < params.len {
        out[i] = apply(input[i]);
    }
}
