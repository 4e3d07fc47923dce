// The schedule checker (see fused_schedule_check.h). Every tensor the step touches becomes a
// range of one element index space; each task lists its accesses as rectangles of it (what the
// kernel's tile, reduction or loss code reads and writes). Per stage: collect the writer and
// reader of every element, flag conflicts not ordered by a counter, check each read against the
// stage that last wrote the element, then commit the writes. Per step: every output element
// must have been written exactly once.
#include "fused_schedule_check.h"

#include <algorithm>
#include <sstream>
#include <vector>

namespace mlp::fused {
namespace {

constexpr int32_t kNone = -1, kMany = -2;

enum class Need { kNew, kOld, kWrite };  // kNew: written earlier this step; kOld: not yet

struct Access {
  int32_t tensor;
  int64_t base, rows, stride, c0, c1;  // elements base + r * stride + c, r < rows, c0 <= c < c1
  Need need;
};

struct Task {
  std::string name;
  Op op;
  int32_t group;
  bool reducer = false, loss = false;
  std::vector<Access> acc;
};

struct Tensor {
  std::string name;
  int64_t begin, size;
  int want = 1;  // writes per element per step: 0 for what a forward-only plan never touches
};

class Checker {
 public:
  Checker(const Plan& p, const TileOwner& owner) : p_(p), owner_(owner) {
    const int64_t B = p.batch;
    for (int32_t l = 0; l < p.layers; ++l) {
      const LayerPlan& lp = p.layer[l];
      act_.push_back(add("acts[" + std::to_string(l + 1) + "]", B * lp.fan_out));
      dz_.push_back(add("dz[" + std::to_string(l) + "]", B * lp.fan_out));
      fpart_.push_back(lp.fwd.red_tiles > 1 ? add("forward partials of layer " + std::to_string(l),
                                                  lp.fwd.red_tiles * B * lp.fan_out)
                                            : kNone);
      dpart_.push_back(
          l >= 1 && lp.dx.red_tiles > 1
              ? add("dX partials of layer " + std::to_string(l), lp.dx.red_tiles * B * lp.fan_in)
              : kNone);
      w_.push_back(add("W" + std::to_string(l), int64_t{lp.fan_in} * lp.fan_out));
      b_.push_back(add("b" + std::to_string(l), lp.fan_out));
      if (p.forward_only) {  // evaluation: no parameter update, dz only from the loss
        tensors_[w_.back()].want = tensors_[b_.back()].want = 0;
        if (l + 1 < p.layers) tensors_[dz_.back()].want = 0;
      }
    }
    metrics_ = add("metrics", 1);
    writer_.assign(total_, kNone);
    reader_.assign(total_, kNone);
    last_write_.assign(total_, kNone);
    writes_.assign(total_, 0);
  }

  std::string run(int steps) {
    for (int step = 0; step < steps; ++step) {
      std::fill(writes_.begin(), writes_.end(), 0);
      for (int32_t s = 0; s < p_.stage_count; ++s) {
        std::vector<Task> tasks;
        if (!tasks_of_stage(s, &tasks)) return error_;
        if (!check_stage(step, s, tasks)) return error_;
      }
      for (const Tensor& t : tensors_)
        for (int64_t e = t.begin; e < t.begin + t.size; ++e)
          if (writes_[e] != t.want) {
            std::ostringstream os;
            os << "step " << step << ": element " << e - t.begin << " of " << t.name
               << " was written " << writes_[e] << " times (want "
               << (t.want == 1 ? "exactly once" : "never") << ")";
            return os.str();
          }
    }
    return "";
  }

 private:
  int32_t add(const std::string& name, int64_t size) {
    tensors_.push_back({name, total_, size});
    total_ += size;
    return static_cast<int32_t>(tensors_.size() - 1);
  }

  static Access rect(int32_t t, int64_t base, int64_t rows, int64_t stride, int64_t c0, int64_t c1,
                     Need need) {
    return Access{t, base, rows, stride, c0, c1, need};
  }

  std::string op_name(Op op) const {
    static const char* kinds[] = {"forward", "dX", "dW"};
    return std::string(kinds[static_cast<int>(op.kind)]) + " of layer " + std::to_string(op.layer);
  }

  // Every term of every sum is added exactly once: in each group, the slots' reduced ranges
  // tile [0, red) without gap or overlap, with slots 0..red_tiles-1 once each; the groups'
  // output ranges tile [0, out) the same way.
  bool check_partition(Op op) {
    const Split& sp = op_split(p_, op);
    const int32_t red = op_red(p_, op), out = op_out(p_, op);
    std::vector<int32_t> out_hits(out, 0);
    for (int32_t g = 0; g < sp.out_tiles; ++g) {
      std::vector<int32_t> red_hits(red, 0), slot_hits(sp.red_tiles, 0);
      Tile first{};
      for (int32_t t = 0; t < op_tile_count(p_, op); ++t) {
        const Tile tl = op_tile(p_, op, t);
        if (tl.group != g) continue;
        if (tl.slot < 0 || tl.slot >= sp.red_tiles || slot_hits[tl.slot]++ != 0)
          return fail(op_name(op) + ": group " + std::to_string(g) + " has a bad slot");
        if (tl.slot == 0) first = tl;
        if (tl.out0 != first.out0 || tl.out1 != first.out1)
          return fail(op_name(op) + ": the tiles of group " + std::to_string(g) +
                      " disagree on their output range");
        for (int32_t r = std::max(tl.red0, 0); r < std::min(tl.red1, red); ++r) ++red_hits[r];
      }
      for (int32_t r = 0; r < red; ++r)
        if (red_hits[r] != 1)
          return fail(op_name(op) + ": term " + std::to_string(r) + " of group " +
                      std::to_string(g) + "'s sums is added " + std::to_string(red_hits[r]) +
                      " times (want exactly once)");
      for (int32_t o = std::max(first.out0, 0); o < std::min(first.out1, out); ++o) ++out_hits[o];
    }
    for (int32_t o = 0; o < out; ++o)
      if (out_hits[o] != 1)
        return fail(op_name(op) + ": output column " + std::to_string(o) + " belongs to " +
                    std::to_string(out_hits[o]) + " groups (want exactly one)");
    return true;
  }

  // The tasks of stage s: each owned tile, then the counted reductions and the loss.
  bool tasks_of_stage(int32_t s, std::vector<Task>* out) {
    const int64_t B = p_.batch;
    for (int32_t i = 0; i < p_.stage[s].op_count; ++i) {
      const Op op = p_.stage[s].ops[i];
      if (!check_partition(op)) return false;
      const int32_t l = op.layer, count = op_tile_count(p_, op);
      const LayerPlan& lp = p_.layer[l];
      std::vector<int32_t> owner(count, kNone);
      for (int32_t b = 0; b < p_.grid; ++b) {
        const int32_t t = owner_(p_, op, b);
        if (t == kNone) continue;
        if (t < 0 || t >= count || owner[t] != kNone)
          return fail("stage " + std::to_string(s) + ": tile " + std::to_string(t) + " of " +
                      op_name(op) + (t < 0 || t >= count ? " does not exist" : " has two owners"));
        owner[t] = b;
      }
      for (int32_t t = 0; t < count; ++t) {
        if (owner[t] == kNone)
          return fail("stage " + std::to_string(s) + ": tile " + std::to_string(t) + " of " +
                      op_name(op) + " is run by no block");
        const Tile tl = op_tile(p_, op, t);
        Task k{op_name(op) + " tile " + std::to_string(t), op, tl.group, false, false, {}};
        if (op.kind == OpKind::kForward) {
          const int64_t N = lp.fan_out;
          if (l >= 1)
            k.acc.push_back(rect(act_[l - 1], 0, B, lp.fan_in, tl.red0, tl.red1, Need::kNew));
          k.acc.push_back(rect(w_[l], int64_t{tl.red0} * N, tl.red1 - tl.red0, N, tl.out0, tl.out1,
                               Need::kOld));
          if (lp.fwd.red_tiles > 1) {
            k.acc.push_back(rect(fpart_[l], tl.slot * B * N, B, N, tl.out0, tl.out1, Need::kWrite));
          } else {
            k.acc.push_back(rect(b_[l], 0, 1, 0, tl.out0, tl.out1, Need::kOld));
            k.acc.push_back(rect(act_[l], 0, B, N, tl.out0, tl.out1, Need::kWrite));
          }
        } else if (op.kind == OpKind::kDx) {
          const int64_t N = lp.fan_out, K = lp.fan_in;
          k.acc.push_back(rect(dz_[l], 0, B, N, tl.red0, tl.red1, Need::kNew));
          k.acc.push_back(rect(w_[l], int64_t{tl.out0} * N, tl.out1 - tl.out0, N, tl.red0, tl.red1,
                               Need::kOld));
          if (lp.dx.red_tiles > 1) {
            k.acc.push_back(rect(dpart_[l], tl.slot * B * K, B, K, tl.out0, tl.out1, Need::kWrite));
          } else {
            k.acc.push_back(rect(act_[l - 1], 0, B, K, tl.out0, tl.out1, Need::kNew));
            k.acc.push_back(rect(dz_[l - 1], 0, B, K, tl.out0, tl.out1, Need::kWrite));
          }
        } else {
          const int64_t N = lp.fan_out;
          if (l >= 1)
            k.acc.push_back(rect(act_[l - 1], 0, B, lp.fan_in, tl.red0, tl.red1, Need::kNew));
          k.acc.push_back(rect(dz_[l], 0, B, N, tl.out0, tl.out1, Need::kNew));
          for (Need n : {Need::kOld, Need::kWrite}) {
            k.acc.push_back(
                rect(w_[l], int64_t{tl.red0} * N, tl.red1 - tl.red0, N, tl.out0, tl.out1, n));
            if (tl.slot == 0) k.acc.push_back(rect(b_[l], 0, 1, 0, tl.out0, tl.out1, n));
          }
        }
        out->push_back(std::move(k));
      }
      const Split& sp = op_split(p_, op);
      const bool reduces = op.kind != OpKind::kDw && sp.red_tiles > 1;
      for (int32_t g = 0; reduces && g < sp.out_tiles; ++g) {
        const Tile tl = op_tile(p_, op, g * sp.red_tiles);
        Task k{op_name(op) + " reduction " + std::to_string(g), op, g, true, false, {}};
        if (op.kind == OpKind::kForward) {
          const int64_t N = lp.fan_out;
          for (int32_t r = 0; r < sp.red_tiles; ++r)
            k.acc.push_back(rect(fpart_[l], r * B * N, B, N, tl.out0, tl.out1, Need::kNew));
          k.acc.push_back(rect(b_[l], 0, 1, 0, tl.out0, tl.out1, Need::kOld));
          k.acc.push_back(rect(act_[l], 0, B, N, tl.out0, tl.out1, Need::kWrite));
        } else {
          const int64_t K = lp.fan_in;
          for (int32_t r = 0; r < sp.red_tiles; ++r)
            k.acc.push_back(rect(dpart_[l], r * B * K, B, K, tl.out0, tl.out1, Need::kNew));
          k.acc.push_back(rect(act_[l - 1], 0, B, K, tl.out0, tl.out1, Need::kNew));
          k.acc.push_back(rect(dz_[l - 1], 0, B, K, tl.out0, tl.out1, Need::kWrite));
        }
        out->push_back(std::move(k));
      }
      if (op.kind == OpKind::kForward && l == p_.layers - 1) {
        const int64_t C = lp.fan_out;
        Task k{"loss", op, kNone, false, true, {}};
        k.acc.push_back(rect(act_[l], 0, B, C, 0, C, Need::kNew));
        k.acc.push_back(rect(dz_[l], 0, B, C, 0, C, Need::kWrite));
        k.acc.push_back(rect(metrics_, 0, 1, 0, 0, 1, Need::kWrite));
        out->push_back(std::move(k));
      }
    }
    return true;
  }

  // May task r read, in the same stage, what task w wrote? Only when a counter makes r wait for
  // w: a reduction for the tiles of its own group, the loss for the last layer's outputs.
  static bool ordered(const Task& w, const Task& r) {
    if (r.reducer)
      return !w.reducer && !w.loss && w.op.kind == r.op.kind && w.op.layer == r.op.layer &&
             w.group == r.group;
    if (r.loss) return w.op.kind == OpKind::kForward && w.op.layer == r.op.layer && !w.loss;
    return false;
  }

  template <class F>
  static void for_each(const Access& a, int64_t begin, F f) {
    for (int64_t r = 0; r < a.rows; ++r)
      for (int64_t c = a.c0; c < a.c1; ++c) f(begin + a.base + r * a.stride + c);
  }

  bool check_stage(int step, int32_t s, const std::vector<Task>& tasks) {
    std::fill(writer_.begin(), writer_.end(), kNone);
    std::fill(reader_.begin(), reader_.end(), kNone);
    const auto mark = [](std::vector<int32_t>& v, int64_t e, int32_t id) {
      v[e] = v[e] == kNone || v[e] == id ? id : kMany;
    };
    for (int32_t id = 0; id < static_cast<int32_t>(tasks.size()); ++id)
      for (const Access& a : tasks[id].acc)
        for_each(a, tensors_[a.tensor].begin, [&](int64_t e) {
          if (a.need == Need::kWrite && writer_[e] != kNone && writer_[e] != id)
            writer_[e] = kMany;
          else if (a.need == Need::kWrite)
            writer_[e] = id;
          else
            mark(reader_, e, id);
        });
    const int32_t now = step * p_.stage_count + s, step_start = step * p_.stage_count;
    for (int32_t id = 0; id < static_cast<int32_t>(tasks.size()); ++id)
      for (const Access& a : tasks[id].acc) {
        bool ok = true;
        std::string why;
        for_each(a, tensors_[a.tensor].begin, [&](int64_t e) {
          if (!ok) return;
          const int32_t w = writer_[e];
          if (a.need == Need::kWrite) {
            if (w == kMany)
              ok = false, why = "is written by two tasks of the same stage";
            else if (reader_[e] == kMany || (reader_[e] != kNone && reader_[e] != id &&
                                             !ordered(tasks[id], tasks[reader_[e]])))
              ok = false, why = "is written while another task of the same stage reads it";
            return;
          }
          if (w != kNone && w != id) {  // written in this stage by another task
            if (w == kMany || !ordered(tasks[w], tasks[id]) || a.need == Need::kOld)
              ok = false, why = "is read while another task of the same stage writes it";
            return;
          }
          const int32_t lw = last_write_[e];
          if (a.need == Need::kNew && lw < step_start)
            ok = false, why = "is read before the stage that produces it";
          if (a.need == Need::kOld && lw >= step_start)
            ok = false, why = "is read after this step already updated it";
        });
        if (!ok) {
          std::ostringstream os;
          os << "step " << step << ", stage " << s << ": " << tensors_[a.tensor].name << " " << why
             << " (" << tasks[id].name << ")";
          return fail(os.str());
        }
      }
    for (const Task& t : tasks)
      for (const Access& a : t.acc)
        if (a.need == Need::kWrite)
          for_each(a, tensors_[a.tensor].begin, [&](int64_t e) {
            last_write_[e] = now;
            ++writes_[e];
          });
    return true;
  }

  bool fail(const std::string& why) {
    error_ = why;
    return false;
  }

  const Plan& p_;
  const TileOwner& owner_;
  std::vector<Tensor> tensors_;
  int64_t total_ = 0;
  std::vector<int32_t> act_, dz_, fpart_, dpart_, w_, b_;
  int32_t metrics_ = kNone;
  std::vector<int32_t> writer_, reader_, last_write_, writes_;
  std::string error_;
};

}  // namespace

std::string check_schedule(const Plan& plan, const TileOwner& owner, int steps) {
  Checker c(plan, owner);
  return c.run(steps);
}

}  // namespace mlp::fused
