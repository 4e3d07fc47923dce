// Finite-difference check of a whole small network (6-5-4-3, batch 4):
// Model::backward's gradients against central differences of the mean loss.
// The loss for the differences is a double-precision host reimplementation
// (W_l is (fan_in, fan_out) row-major, Y = X W + b, ReLU between layers), tied
// to the model by checking it reproduces Model's own loss; a second, looser
// check perturbs the model itself through set_state.
#include <gtest/gtest.h>

#include <cmath>

#include "mlp/model.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::near;

const std::vector<int64_t> kSizes{6, 5, 4, 3};
constexpr int64_t kBatch = 4;

// Mean softmax cross-entropy of the MLP in double, from the flat layout.
double host_loss(const ParamLayout& lay, const std::vector<double>& p,
                 const std::vector<uint8_t>& images, const std::vector<uint8_t>& labels) {
  double total = 0;
  for (int64_t s = 0; s < kBatch; ++s) {
    std::vector<double> a(static_cast<std::size_t>(lay.fan_in(0)));
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = images[s * lay.fan_in(0) + i] / 255.0;
    for (int64_t l = 0; l < lay.layers(); ++l) {
      std::vector<double> y(static_cast<std::size_t>(lay.fan_out(l)));
      for (int64_t j = 0; j < lay.fan_out(l); ++j) {
        double z = p[lay.bias_offset(l) + j];
        for (int64_t i = 0; i < lay.fan_in(l); ++i)
          z += a[i] * p[lay.weight_offset(l) + i * lay.fan_out(l) + j];
        y[j] = (l + 1 < lay.layers() && z < 0) ? 0.0 : z;
      }
      a = std::move(y);
    }
    double mx = a[0];
    for (double v : a) mx = std::max(mx, v);
    double sum = 0;
    for (double v : a) sum += std::exp(v - mx);
    total += std::log(sum) + mx - a[labels[s]];
  }
  return total / kBatch;
}

struct Net {
  std::unique_ptr<Backend> be = make_cpu_backend(CpuOptions{1});
  Model model{*be, kSizes, kBatch, AdamHyper{}, false};
  std::vector<uint8_t> images = testing::pattern_bytes(kBatch * 6, 3);
  std::vector<uint8_t> labels{0, 2, 1, 2};
  testing::DeviceVec<uint8_t> d_images{*be, images};
  testing::DeviceVec<uint8_t> d_labels{*be, labels};
  std::vector<float> params;

  Net() {
    // He weights plus non-zero biases, so bias gradients are tested through every layer.
    params = initial_params(model.layout(), InitScheme::kHe, 7);
    const auto bias = testing::random_floats(params.size(), 8, 0.3);
    for (int64_t l = 0; l < model.layout().layers(); ++l)
      for (int64_t j = 0; j < model.layout().fan_out(l); ++j)
        params[model.layout().bias_offset(l) + j] = bias[model.layout().bias_offset(l) + j];
    model.set_params(params);
  }
  // Mean loss from Model::eval_step; the gradient from Model::backward.
  double model_loss() {
    testing::DeviceVec<double> m(*be, std::vector<double>{0.0, 0.0});
    model.eval_step(d_images.get(), d_labels.get(), kBatch, m.get());
    return m.download()[kMetricLossSum] / kBatch;
  }
  std::vector<float> model_grads(double* loss) {
    testing::DeviceVec<double> m(*be, std::vector<double>{0.0, 0.0});
    model.forward(d_images.get(), kBatch);
    model.backward(d_labels.get(), kBatch, m.get());
    *loss = m.download()[kMetricLossSum] / kBatch;
    std::vector<float> g(params.size());
    be->download(g.data(), model.grads(), g.size() * sizeof(float));
    return g;
  }
  bool is_parameter(int64_t i) const {  // false for alignment padding
    const ParamLayout& lay = model.layout();
    for (int64_t l = 0; l < lay.layers(); ++l) {
      if (i >= lay.weight_offset(l) && i < lay.weight_offset(l) + lay.fan_in(l) * lay.fan_out(l))
        return true;
      if (i >= lay.bias_offset(l) && i < lay.bias_offset(l) + lay.fan_out(l)) return true;
    }
    return false;
  }
};

TEST(GradCheck, BackwardMatchesCentralDifferencesInDouble) {
  Net net;
  const ParamLayout& lay = net.model.layout();
  ASSERT_GT(lay.total_floats(), lay.parameter_count()) << "test wants some padding to check";
  double loss = 0;
  const std::vector<float> g = net.model_grads(&loss);

  std::vector<double> p(net.params.begin(), net.params.end());
  // The host reimplementation computes the model's function.
  ASSERT_TRUE(near(host_loss(lay, p, net.images, net.labels), loss, 1e-5, 1e-5));

  // Central differences in double: truncation ~eps^2, rounding ~1e-16/eps.
  // Tolerance on float gradients: |g - fd| <= 1e-5 + 1e-3 |fd|.
  constexpr double kEps = 1e-6;
  int checked = 0;
  for (int64_t i = 0; i < lay.total_floats(); ++i) {
    if (!net.is_parameter(i)) {
      EXPECT_EQ(g[i], 0.0f) << "padding float " << i << " has a gradient";
      continue;
    }
    const double keep = p[i];
    p[i] = keep + kEps;
    const double up = host_loss(lay, p, net.images, net.labels);
    p[i] = keep - kEps;
    const double down = host_loss(lay, p, net.images, net.labels);
    p[i] = keep;
    const double fd = (up - down) / (2 * kEps);
    EXPECT_TRUE(near(g[i], fd, 1e-5, 1e-3)) << "parameter " << i;
    ++checked;
  }
  EXPECT_EQ(checked, lay.parameter_count());
}

TEST(GradCheck, BackwardMatchesDifferencesOfTheModelItself) {
  // Perturbs the model's own parameters via set_state and differences its
  // float loss: looser (float rounding / eps), but no reimplementation involved.
  Net net;
  const ParamLayout& lay = net.model.layout();
  double loss = 0;
  const std::vector<float> g = net.model_grads(&loss);
  ASSERT_TRUE(near(net.model_loss(), loss, 1e-6, 1e-6)) << "eval_step and backward disagree";

  ModelState st = net.model.state();
  constexpr float kEps = 1e-2f;
  for (int64_t l = 0; l < lay.layers(); ++l) {
    // first and last weight, and every bias, of each layer
    std::vector<int64_t> idx{lay.weight_offset(l),
                             lay.weight_offset(l) + lay.fan_in(l) * lay.fan_out(l) - 1};
    for (int64_t j = 0; j < lay.fan_out(l); ++j) idx.push_back(lay.bias_offset(l) + j);
    for (int64_t i : idx) {
      const float keep = st.params[i];
      st.params[i] = keep + kEps;
      net.model.set_state(st);
      const double up = net.model_loss();
      st.params[i] = keep - kEps;
      net.model.set_state(st);
      const double down = net.model_loss();
      st.params[i] = keep;
      const double fd = (up - down) / (2.0 * kEps);
      EXPECT_TRUE(near(g[i], fd, 2e-3, 2e-2)) << "layer " << l << " parameter " << i;
    }
  }
}

TEST(GradCheck, BackwardOverwritesGradients) {
  // Parameter gradients are assigned, not accumulated: a second backward pass
  // over the same batch gives the same numbers.
  Net net;
  double loss1 = 0, loss2 = 0;
  const auto g1 = net.model_grads(&loss1);
  const auto g2 = net.model_grads(&loss2);
  EXPECT_TRUE(testing::all_near(g2, g1, 0.0));
  EXPECT_TRUE(near(loss2, loss1, 0.0));
}

}  // namespace
}  // namespace mlp
