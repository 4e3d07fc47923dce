// Output paths that would destroy something: an output that is the same file
// as an input or another output (`export --model m.ckpt --out m.ckpt`,
// `train --resume r.ckpt --log-json r.ckpt`, `--save data/train-images...`),
// and an existing file of another kind in an output's place (`--save
// notes.txt`). Both are refused with a usage error (exit 2) naming the paths,
// before anything is opened for writing.
#pragma once

#include <string>
#include <vector>

namespace mlp::cli {

struct NamedPath {
  std::string flag;  // "--save", "--resume", "data file", ...
  std::string path;
};

// True when a and b name the same file: the same device and inode when both
// exist, else the same normalized absolute path (symlinks in existing parents
// resolved).
bool same_file(const std::string& a, const std::string& b);

// Every output must differ from every input and from the other outputs.
// Pairs listed in `allowed` (flag names, either order) may coincide, e.g.
// {"--save", "--resume"} for a run that continues a checkpoint in place.
void check_distinct(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& inputs,
                    const std::vector<std::pair<std::string, std::string>>& allowed = {});

// What an output may replace when it exists: an empty file, or a file of
// its own kind.
enum class OutputKind { kCheckpoint, kJsonLines, kSafetensors };
void check_replaceable(const NamedPath& out, OutputKind kind);

// The MNIST file names `train --data DIR` may read (raw and .gz), for check_distinct.
std::vector<NamedPath> mnist_inputs(const std::string& dir);

}  // namespace mlp::cli
