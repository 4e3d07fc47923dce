// The CPU reference for the fused tests (see fused_reference.h): Model and the CPU backend's
// public ops, exactly as the rest of the suite uses them.
#include "fused_reference.h"

#include <memory>

#include "mlp/backend.h"
#include "mlp/model.h"

namespace mlp::fused_ref {
namespace {

Backend& cpu() {
  static std::unique_ptr<Backend> be = make_cpu_backend(CpuOptions{1});
  return *be;
}

template <class T>
Buffer upload(const std::vector<T>& host) {
  Buffer b = cpu().alloc(host.size() * sizeof(T) + 1);
  cpu().upload(b.data(), host.data(), host.size() * sizeof(T));
  return b;
}

}  // namespace

std::vector<int64_t> layout_offsets(const std::vector<int64_t>& sizes) {
  const ParamLayout layout(sizes);
  std::vector<int64_t> out;
  for (int64_t l = 0; l < layout.layers(); ++l) {
    out.push_back(layout.weight_offset(l));
    out.push_back(layout.bias_offset(l));
  }
  out.push_back(layout.total_floats());
  return out;
}

std::vector<float> he_params(const std::vector<int64_t>& sizes, uint64_t seed) {
  return initial_params(ParamLayout(sizes), InitScheme::kHe, seed);
}

StepResult cpu_step(const std::vector<int64_t>& sizes, int64_t batch, const ModelState& before,
                    const AdamHyper& h, const std::vector<uint8_t>& images,
                    const std::vector<uint8_t>& labels, bool binarize) {
  Model model(cpu(), sizes, batch, h, binarize);
  model.set_state(before);
  Buffer img = upload(images), lab = upload(labels);
  Buffer metrics = upload(std::vector<double>{0.0, 0.0});
  StepResult r;
  model.forward(img.as<uint8_t>(), batch);
  const CMat logits = model.logits(batch);
  r.logits.assign(logits.data, logits.data + logits.size());
  model.backward(lab.as<uint8_t>(), batch, metrics.as<double>());
  const auto n = static_cast<std::size_t>(model.layout().total_floats());
  r.grads.assign(model.grads(), model.grads() + n);
  model.update();
  r.after = model.state();
  r.loss_sum = metrics.as<double>()[0];
  r.correct = metrics.as<double>()[1];
  return r;
}

void cpu_adam(std::vector<float>& p, const std::vector<float>& g, std::vector<float>& m,
              std::vector<float>& v, const AdamHyper& h, int64_t* step) {
  Buffer bp = upload(p), bg = upload(g), bm = upload(m), bv = upload(v);
  OptimizerState st;
  st.step = *step;
  st.adam = h;
  Buffer bs = upload(std::vector<OptimizerState>{st});
  cpu().adam_step(bp.as<float>(), bg.as<float>(), bm.as<float>(), bv.as<float>(),
                  static_cast<int64_t>(p.size()), bs.as<OptimizerState>());
  p.assign(bp.as<float>(), bp.as<float>() + p.size());
  m.assign(bm.as<float>(), bm.as<float>() + m.size());
  v.assign(bv.as<float>(), bv.as<float>() + v.size());
  *step = bs.as<OptimizerState>()->step;
}

std::vector<float> cpu_softmax_xent(const std::vector<float>& logits, int64_t rows, int64_t classes,
                                    const std::vector<uint8_t>& labels, double* metrics) {
  Buffer x = upload(logits), lab = upload(labels), d = upload(logits);
  Buffer mt = upload(std::vector<double>{metrics[0], metrics[1]});
  cpu().softmax_xent(CMat{x.as<float>(), rows, classes}, lab.as<uint8_t>(), d.as<float>(),
                     mt.as<double>());
  metrics[0] = mt.as<double>()[0];
  metrics[1] = mt.as<double>()[1];
  return std::vector<float>(d.as<float>(), d.as<float>() + logits.size());
}

std::string cuda_unavailable() { return cuda_unavailable_reason(); }

}  // namespace mlp::fused_ref
