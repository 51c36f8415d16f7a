//! Architecture builders with seeded random weights: NIN, AlexNet, VGG-16, ResNet-18 and
//! ResNet-50, at native size or scaled down (channel width and input resolution) for tests.
//!
//! Weights are He-uniform (`±sqrt(6 / fan_in)`), so activations keep their scale through
//! depth; BatchNorm statistics are random but well conditioned. Layer names follow the
//! original models (Caffe for NIN/AlexNet/VGG, torchvision for ResNets).

use super::{BatchNorm, Conv, InputSpec, Linear, Lrn, Network, Op, Pool};
use crate::error::{Error, Result};
use crate::rng::SeededRng;

/// The ImageNet/CIFAR architectures [`build`] knows.
pub const NAMES: [&str; 5] = ["nin", "alexnet", "vgg16", "resnet18", "resnet50"];

/// Small NIN-, VGG- and ResNet-style networks for 28×28 grayscale images (Fashion-MNIST),
/// sized to train on a CPU; [`build`] knows them too.
pub const FASHION: [&str; 3] = ["fashion_nin", "fashion_vgg", "fashion_resnet"];

/// Size and seed of a zoo network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZooConfig {
    /// Channel multiplier (1.0 = the original widths; at least one channel per layer).
    pub width: f64,
    /// Input height and width (`None` = native: 32 for NIN, 227 for AlexNet, 224 otherwise).
    pub resolution: Option<usize>,
    /// Classes (`None` = native: 10 for NIN, 1000 otherwise).
    pub classes: Option<usize>,
    /// Seed of every weight.
    pub seed: u64,
}

impl Default for ZooConfig {
    fn default() -> Self {
        ZooConfig { width: 1.0, resolution: None, classes: None, seed: 0 }
    }
}

impl ZooConfig {
    /// A small variant: `width` channel multiplier at `resolution`.
    pub fn scaled(width: f64, resolution: usize) -> Self {
        ZooConfig { width, resolution: Some(resolution), ..Default::default() }
    }
}

/// Builds the architecture `name` (one of [`NAMES`]).
pub fn build(name: &str, config: ZooConfig) -> Result<Network> {
    if !(config.width > 0.0 && config.width.is_finite()) {
        return Err(Error::InvalidArgument(format!("zoo width must be positive, got {}", config.width)));
    }
    match name {
        "nin" => nin(config),
        "alexnet" => alexnet(config),
        "vgg16" => vgg16(config),
        "resnet18" => resnet(config, false),
        "resnet50" => resnet(config, true),
        "fashion_nin" => fashion_nin(config),
        "fashion_vgg" => fashion_vgg(config),
        "fashion_resnet" => fashion_resnet(config),
        other => Err(Error::InvalidArgument(format!(
            "unknown zoo network '{other}'; known: {}, {}",
            NAMES.join(", "),
            FASHION.join(", ")
        ))),
    }
}

struct Maker {
    net: Network,
    rng: SeededRng,
    width: f64,
}

impl Maker {
    fn new(name: &str, config: &ZooConfig, native: usize, min: usize) -> Result<Self> {
        Self::with_channels(name, config, native, min, 3)
    }

    fn with_channels(
        name: &str,
        config: &ZooConfig,
        native: usize,
        min: usize,
        channels: usize,
    ) -> Result<Self> {
        let r = config.resolution.unwrap_or(native);
        if r < min {
            return Err(Error::InvalidArgument(format!(
                "{name} needs an input of at least {min}x{min}, got {r}x{r}"
            )));
        }
        let input = InputSpec { name: "input".into(), channels, height: r, width: r };
        Ok(Maker { net: Network::new(name, input), rng: SeededRng::new(config.seed), width: config.width })
    }

    /// Scaled channel count; `multiple` keeps grouped layers divisible.
    fn ch(&self, c: usize, multiple: usize) -> usize {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let scaled = (c as f64 * self.width).round() as usize;
        scaled.max(1).next_multiple_of(multiple)
    }

    fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        self.rng.vec_f32(n, -bound, bound)
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        input: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
        bias: bool,
    ) -> String {
        let fan_in = cin / groups * k * k;
        let weights = self.uniform(cout * fan_in, (6.0 / fan_in as f32).sqrt());
        let bias = bias.then(|| self.uniform(cout, 0.05));
        let op = Op::Conv(Conv {
            stride: [stride, stride],
            groups,
            ..Conv::new(cout, [k, k], pad, weights, bias)
        });
        self.net.push(name, op, &[input])
    }

    fn bn(&mut self, name: &str, input: &str, c: usize) -> String {
        let bn = BatchNorm {
            scale: self.rng.vec_f32(c, 0.8, 1.2),
            shift: self.rng.vec_f32(c, -0.1, 0.1),
            mean: self.rng.vec_f32(c, -0.1, 0.1),
            var: self.rng.vec_f32(c, 0.8, 1.2),
            epsilon: 1e-5,
        };
        self.net.push(name, Op::BatchNorm(bn), &[input])
    }

    fn op(&mut self, name: &str, input: &str, op: Op) -> String {
        self.net.push(name, op, &[input])
    }

    fn linear(&mut self, name: &str, input: &str, fin: usize, fout: usize, last: bool) -> String {
        let bound = if last { (1.0 / fin as f32).sqrt() } else { (6.0 / fin as f32).sqrt() };
        let weights = self.uniform(fout * fin, bound);
        let bias = Some(self.uniform(fout, 0.05));
        self.net.push(
            name,
            Op::Linear(Linear { out_features: fout, weights: weights.into(), bias }),
            &[input],
        )
    }
}

impl Maker {
    /// Two 3×3 convs with BN (ReLU between), `planes` channels, the first strided: the
    /// residual branch of a basic block.
    fn basic_branch(&mut self, p: &str, x: &str, cin: usize, planes: usize, stride: usize) -> String {
        let mut y = self.conv(&format!("{p}.conv1"), x, cin, planes, 3, stride, 1, 1, false);
        y = self.bn(&format!("{p}.bn1"), &y, planes);
        y = self.op(&format!("{p}.relu1"), &y, Op::Relu);
        y = self.conv(&format!("{p}.conv2"), &y, planes, planes, 3, 1, 1, 1, false);
        self.bn(&format!("{p}.bn2"), &y, planes)
    }

    /// `relu(branch + shortcut)`, the shortcut a strided 1×1 projection with BN where the
    /// shape changes.
    fn residual(
        &mut self,
        p: &str,
        branch: &str,
        identity: &str,
        cin: usize,
        cout: usize,
        stride: usize,
    ) -> String {
        let shortcut = if stride != 1 || cin != cout {
            let d = self.conv(&format!("{p}.downsample.0"), identity, cin, cout, 1, stride, 0, 1, false);
            self.bn(&format!("{p}.downsample.1"), &d, cout)
        } else {
            identity.to_string()
        };
        let sum = self.net.push(format!("{p}.add"), Op::Add, &[branch, &shortcut]);
        self.op(&format!("{p}.relu"), &sum, Op::Relu)
    }

    /// Global average pooling, flatten, the classifier and softmax.
    fn pooled_classifier(&mut self, x: &str, features: usize, classes: usize) {
        let x = self.op("avgpool", x, Op::GlobalAvgPool);
        let x = self.op("flatten", &x, Op::Flatten);
        let x = self.linear("fc", &x, features, classes, true);
        self.op("prob", &x, Op::Softmax);
    }

    /// AlexNet's and VGG's head: flatten, fc6 and fc7 (4096 scaled, ReLU, dropout), fc8,
    /// softmax.
    fn classifier(&mut self, x: &str, features: usize, classes: usize) {
        let f = self.ch(4096, 1);
        let mut x = self.op("flatten", x, Op::Flatten);
        for (i, fin) in [(6, features), (7, f)] {
            x = self.linear(&format!("fc{i}"), &x, fin, f, false);
            x = self.op(&format!("relu{i}"), &x, Op::Relu);
            x = self.op(&format!("drop{i}"), &x, Op::Dropout { ratio: 0.5 });
        }
        x = self.linear("fc8", &x, f, classes, true);
        self.op("prob", &x, Op::Softmax);
    }
}

fn pool(k: usize, stride: usize, pad: usize, ceil_mode: bool) -> Pool {
    Pool { kernel: [k, k], stride: [stride, stride], pads: [pad; 4], ceil_mode, count_include_pad: false }
}

/// Network in Network for 32×32 inputs (CIFAR), Caffe layout: ceil-mode pooling.
pub fn nin(config: ZooConfig) -> Result<Network> {
    let mut m = Maker::new("nin", &config, 32, 8)?;
    let classes = config.classes.unwrap_or(10);
    let (c192, c160, c96) = (m.ch(192, 1), m.ch(160, 1), m.ch(96, 1));
    let mut x = "input".to_string();
    let mut cin = 3;
    let blocks: [(usize, usize, [usize; 3], bool); 3] = [
        (5, 2, [c192, c160, c96], false),
        (5, 2, [c192, c192, c192], true),
        (3, 1, [c192, c192, classes], false),
    ];
    for (b, (k, pad, chans, avg)) in blocks.into_iter().enumerate() {
        let names = [format!("conv{}", b + 1), format!("cccp{}", 2 * b + 1), format!("cccp{}", 2 * b + 2)];
        for (i, (name, &c)) in names.iter().zip(&chans).enumerate() {
            let (kk, pp) = if i == 0 { (k, pad) } else { (1, 0) };
            x = m.conv(name, &x, cin, c, kk, 1, pp, 1, true);
            x = m.op(&format!("relu_{name}"), &x, Op::Relu);
            cin = c;
        }
        if b < 2 {
            let p = pool(3, 2, 0, true);
            x = m.op(&format!("pool{}", b + 1), &x, if avg { Op::AvgPool(p) } else { Op::MaxPool(p) });
            x = m.op(&format!("drop{}", b + 1), &x, Op::Dropout { ratio: 0.5 });
        }
    }
    x = m.op("pool3", &x, Op::GlobalAvgPool);
    x = m.op("flatten", &x, Op::Flatten);
    m.op("prob", &x, Op::Softmax);
    Ok(m.net)
}

/// AlexNet (Caffe BVLC layout) for 227×227 inputs: LRN, grouped convs, overlapping pools.
pub fn alexnet(config: ZooConfig) -> Result<Network> {
    let mut m = Maker::new("alexnet", &config, 227, 67)?;
    let classes = config.classes.unwrap_or(1000);
    let r = m.net.input.height;
    let lrn = || Op::Lrn(Lrn { size: 5, alpha: 1e-4, beta: 0.75, bias: 1.0 });
    let (c96, c256, c384) = (m.ch(96, 2), m.ch(256, 2), m.ch(384, 2));
    let mut x = m.conv("conv1", "input", 3, c96, 11, 4, 0, 1, true);
    x = m.op("relu1", &x, Op::Relu);
    x = m.op("norm1", &x, lrn());
    x = m.op("pool1", &x, Op::MaxPool(pool(3, 2, 0, false)));
    x = m.conv("conv2", &x, c96, c256, 5, 1, 2, 2, true);
    x = m.op("relu2", &x, Op::Relu);
    x = m.op("norm2", &x, lrn());
    x = m.op("pool2", &x, Op::MaxPool(pool(3, 2, 0, false)));
    x = m.conv("conv3", &x, c256, c384, 3, 1, 1, 1, true);
    x = m.op("relu3", &x, Op::Relu);
    x = m.conv("conv4", &x, c384, c384, 3, 1, 1, 2, true);
    x = m.op("relu4", &x, Op::Relu);
    x = m.conv("conv5", &x, c384, c256, 3, 1, 1, 2, true);
    x = m.op("relu5", &x, Op::Relu);
    x = m.op("pool5", &x, Op::MaxPool(pool(3, 2, 0, false)));
    let s = {
        let p = |v: usize| (v - 3) / 2 + 1;
        p(p(p((r - 11) / 4 + 1)))
    };
    m.classifier(&x, c256 * s * s, classes);
    Ok(m.net)
}

/// VGG-16 (configuration D) for 224×224 inputs.
pub fn vgg16(config: ZooConfig) -> Result<Network> {
    let mut m = Maker::new("vgg16", &config, 224, 32)?;
    let classes = config.classes.unwrap_or(1000);
    let r = m.net.input.height;
    let stages: [(usize, usize); 5] = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)];
    let mut x = "input".to_string();
    let mut cin = 3;
    for (s, (c, n)) in stages.into_iter().enumerate() {
        let c = m.ch(c, 1);
        for i in 1..=n {
            let name = format!("conv{}_{i}", s + 1);
            x = m.conv(&name, &x, cin, c, 3, 1, 1, 1, true);
            x = m.op(&format!("relu{}_{i}", s + 1), &x, Op::Relu);
            cin = c;
        }
        x = m.op(&format!("pool{}", s + 1), &x, Op::MaxPool(pool(2, 2, 0, false)));
    }
    let side = r >> 5;
    m.classifier(&x, cin * side * side, classes);
    Ok(m.net)
}

/// ResNet-18 (basic blocks) or ResNet-50 (bottlenecks, stride on the 3×3 as in
/// torchvision), with BatchNorm and strided 1×1 projection shortcuts.
fn resnet(config: ZooConfig, bottleneck: bool) -> Result<Network> {
    let name = if bottleneck { "resnet50" } else { "resnet18" };
    let mut m = Maker::new(name, &config, 224, 32)?;
    let classes = config.classes.unwrap_or(1000);
    let c64 = m.ch(64, 1);
    let mut x = m.conv("conv1", "input", 3, c64, 7, 2, 3, 1, false);
    x = m.bn("bn1", &x, c64);
    x = m.op("relu", &x, Op::Relu);
    x = m.op("maxpool", &x, Op::MaxPool(pool(3, 2, 1, false)));
    let (blocks, expansion) = if bottleneck { ([3, 4, 6, 3], 4) } else { ([2, 2, 2, 2], 1) };
    let mut cin = c64;
    for (stage, (&n, planes)) in blocks.iter().zip([64, 128, 256, 512]).enumerate() {
        let planes = m.ch(planes, 1);
        let cout = planes * expansion;
        for b in 0..n {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            let p = format!("layer{}.{b}", stage + 1);
            let identity = x.clone();
            let mut y;
            if bottleneck {
                y = m.conv(&format!("{p}.conv1"), &x, cin, planes, 1, 1, 0, 1, false);
                y = m.bn(&format!("{p}.bn1"), &y, planes);
                y = m.op(&format!("{p}.relu1"), &y, Op::Relu);
                y = m.conv(&format!("{p}.conv2"), &y, planes, planes, 3, stride, 1, 1, false);
                y = m.bn(&format!("{p}.bn2"), &y, planes);
                y = m.op(&format!("{p}.relu2"), &y, Op::Relu);
                y = m.conv(&format!("{p}.conv3"), &y, planes, cout, 1, 1, 0, 1, false);
                y = m.bn(&format!("{p}.bn3"), &y, cout);
            } else {
                y = m.basic_branch(&p, &x, cin, planes, stride);
            }
            x = m.residual(&p, &y, &identity, cin, cout, stride);
            cin = cout;
        }
    }
    m.pooled_classifier(&x, cin, classes);
    Ok(m.net)
}

/// NIN-style for 28×28×1: three blocks of a 3×3 conv and two 1×1 "cccp" convs (ReLU
/// after each), max / average pooling between blocks, global average pooling of the
/// last block's 10 class maps.
pub fn fashion_nin(config: ZooConfig) -> Result<Network> {
    let mut m = Maker::with_channels("fashion_nin", &config, 28, 12, 1)?;
    let classes = config.classes.unwrap_or(10);
    let (c32, c64) = (m.ch(32, 1), m.ch(64, 1));
    let mut x = "input".to_string();
    let mut cin = 1;
    let blocks = [[c32, c32, c32], [c64, c64, c64], [c64, c64, classes]];
    for (b, chans) in blocks.into_iter().enumerate() {
        let names = [format!("conv{}", b + 1), format!("cccp{}", 2 * b + 1), format!("cccp{}", 2 * b + 2)];
        for (i, (name, c)) in names.iter().zip(chans).enumerate() {
            let (k, pad) = if i == 0 { (3, 1) } else { (1, 0) };
            x = m.conv(name, &x, cin, c, k, 1, pad, 1, true);
            if !(b == 2 && i == 2) {
                x = m.op(&format!("relu_{name}"), &x, Op::Relu);
            }
            cin = c;
        }
        if b < 2 {
            let p = pool(3, 2, 0, true);
            x = m.op(&format!("pool{}", b + 1), &x, if b == 1 { Op::AvgPool(p) } else { Op::MaxPool(p) });
        }
    }
    x = m.op("pool3", &x, Op::GlobalAvgPool);
    x = m.op("flatten", &x, Op::Flatten);
    m.op("prob", &x, Op::Softmax);
    Ok(m.net)
}

/// VGG-style for 28×28×1: conv3×3 pairs at 24 and 48 channels and one at 96, each stage
/// followed by 2×2 max pooling, then fc 256 (ReLU, dropout) and the classifier.
pub fn fashion_vgg(config: ZooConfig) -> Result<Network> {
    let mut m = Maker::with_channels("fashion_vgg", &config, 28, 8, 1)?;
    let classes = config.classes.unwrap_or(10);
    let r = m.net.input.height;
    let mut x = "input".to_string();
    let mut cin = 1;
    for (s, (c, n)) in [(24, 2), (48, 2), (96, 1)].into_iter().enumerate() {
        let c = m.ch(c, 1);
        for i in 1..=n {
            let name = format!("conv{}_{i}", s + 1);
            x = m.conv(&name, &x, cin, c, 3, 1, 1, 1, true);
            x = m.op(&format!("relu{}_{i}", s + 1), &x, Op::Relu);
            cin = c;
        }
        x = m.op(&format!("pool{}", s + 1), &x, Op::MaxPool(pool(2, 2, 0, false)));
    }
    let side = r / 8;
    let f = m.ch(256, 1);
    x = m.op("flatten", &x, Op::Flatten);
    x = m.linear("fc1", &x, cin * side * side, f, false);
    x = m.op("relu_fc1", &x, Op::Relu);
    x = m.op("drop1", &x, Op::Dropout { ratio: 0.3 });
    x = m.linear("fc2", &x, f, classes, true);
    m.op("prob", &x, Op::Softmax);
    Ok(m.net)
}

/// ResNet-style for 28×28×1: a 3×3 stem (BN, ReLU), three stages of one basic block
/// each (16, 32, 64 channels; stride 2 and a 1×1 projection where the shape changes),
/// global average pooling, classifier.
pub fn fashion_resnet(config: ZooConfig) -> Result<Network> {
    let mut m = Maker::with_channels("fashion_resnet", &config, 28, 8, 1)?;
    let classes = config.classes.unwrap_or(10);
    let c16 = m.ch(16, 1);
    let mut x = m.conv("conv1", "input", 1, c16, 3, 1, 1, 1, false);
    x = m.bn("bn1", &x, c16);
    x = m.op("relu", &x, Op::Relu);
    let mut cin = c16;
    for (stage, planes) in [16, 32, 64].into_iter().enumerate() {
        let planes = m.ch(planes, 1);
        let stride = if stage > 0 { 2 } else { 1 };
        let p = format!("layer{}", stage + 1);
        let y = m.basic_branch(&p, &x, cin, planes, stride);
        x = m.residual(&p, &y, &x, cin, planes, stride);
        cin = planes;
    }
    m.pooled_classifier(&x, cin, classes);
    Ok(m.net)
}
