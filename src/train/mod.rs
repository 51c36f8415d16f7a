//! Learning on the CPU: backpropagation through every layer type (perforated convs
//! included: gradients flow back through the interpolation map), softmax cross-entropy,
//! and the building blocks of training, impact estimation and the greedy search.

mod batch_norm;
mod buffers;
mod conv;
mod experiment;
mod impact;
mod input_grad;
#[cfg(target_arch = "x86_64")]
mod input_grad_cl;
mod layers;
mod loss;
mod lowered;
mod model;
mod pending;
#[cfg(feature = "plots")]
mod plot;
mod search;
mod sgd;
mod tape;
mod tensor_ops;
mod weight_grad;
#[cfg(target_arch = "x86_64")]
mod weight_grad_cl;

pub use experiment::{experiment_table, run_experiment, ExperimentConfig, ExperimentRow, Method, Skipped};
pub use impact::{impact, restrict_to_mask};
pub use loss::softmax_cross_entropy;
pub use model::Model;
#[cfg(feature = "plots")]
pub use plot::plot_experiment;
pub use search::{
    greedy_search, greedy_search_with, ladder, measure_latency, Cost, CostFn, SearchConfig, SearchStep,
    SearchStrategy,
};
pub use sgd::{evaluate, train, train_with, EpochLog, Evaluation, LrSchedule, TrainConfig};
pub use tape::{Grads, Mode, Tape, Tensor};
