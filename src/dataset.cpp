// IDX reading and validation. Every rejection names the file and what is
// wrong; sizes are computed in 64 bits and checked against the bytes actually
// present before anything derived from the header is allocated.
#include "mlp/dataset.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "mlp/error.h"
#include "mlp/file_io.h"

namespace mlp {
namespace {

constexpr const char* kHowToGetData =
    "run tools/fetch-data to download MNIST into data/mnist, or pass --data DIR";

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Something is at the path (a directory, FIFO, device, dangling or looping link).
bool something_at(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

int type_size(uint8_t type) {
  switch (type) {
    case 0x08:
    case 0x09:
      return 1;
    case 0x0B:
      return 2;
    case 0x0C:
    case 0x0D:
      return 4;
    case 0x0E:
      return 8;
    default:
      return 0;
  }
}

std::vector<uint8_t> read_plain(const std::string& path) {
  return read_file_bytes(path, std::size_t{1} << 40, ExitCode::kData, "IDX file");
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// The file size an IDX header promises, or 0 when `head` holds no complete
// well-formed header (parse_idx then says what is wrong).
uint64_t idx_promised_bytes(const std::vector<uint8_t>& head) {
  if (head.size() < 4 || head[0] != 0 || head[1] != 0 || type_size(head[2]) == 0 || head[3] == 0)
    return 0;
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(head[3]);
  if (head.size() < header) return 0;
  uint64_t elements = 1;
  for (int i = 0; i < head[3]; ++i) {
    const uint32_t d = be32(head.data() + 4 + 4 * i);
    if (d == 0 || elements > (uint64_t{1} << 58) / d) return 0;
    elements *= d;
  }
  return header + elements * static_cast<uint64_t>(type_size(head[2]));
}

// Decompresses a gzip file. The output is bounded so a gzip bomb is refused
// instead of exhausting memory: MNIST's largest file is 47 MB.
std::vector<uint8_t> read_gzip(const std::string& path) {
  constexpr std::size_t kMaxDecompressed = std::size_t{1} << 30;
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw data_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::vector<uint8_t> out;
  std::vector<uint8_t> chunk(1 << 20);
  uint64_t promised = 0;
  for (;;) {
    const int n = gzread(f, chunk.data(), static_cast<unsigned>(chunk.size()));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      throw data_error(fmt::format("{}: corrupt gzip data ({})", path, msg));
    }
    if (n == 0) break;
    out.insert(out.end(), chunk.begin(), chunk.begin() + n);
    // Once the header is in, it bounds the output: a header promising more than
    // the limit is refused at once, and the vector never grows past the promise.
    if (promised == 0 && (promised = idx_promised_bytes(out)) != 0) {
      if (promised > kMaxDecompressed) {
        gzclose(f);
        throw data_error(
            fmt::format("{}: the IDX header promises {} bytes, more than 1 GiB; not an MNIST file",
                        path, promised));
      }
      out.reserve(static_cast<std::size_t>(promised) + chunk.size());
    }
    if (promised != 0 && out.size() > promised) {
      gzclose(f);
      throw data_error(fmt::format(
          "{}: decompresses to more than the {} bytes its IDX header promises (trailing bytes)",
          path, promised));
    }
    if (out.size() > kMaxDecompressed) {
      gzclose(f);
      throw data_error(fmt::format("{}: decompresses to more than 1 GiB; not an MNIST file", path));
    }
  }
  // gzread returns 0 both at the end and on a truncated stream; gzclose tells them apart.
  if (gzclose(f) != Z_OK)
    throw data_error(fmt::format("{}: truncated or corrupt gzip stream", path));
  return out;
}

}  // namespace

IdxArray parse_idx(const std::vector<uint8_t>& bytes, const std::string& name) {
  if (bytes.empty()) throw data_error(fmt::format("{}: file is empty", name));
  if (bytes[0] == '<')
    throw data_error(fmt::format(
        "{}: starts with '<': this is an HTML/XML page (a failed download?), not an IDX file",
        name));
  if (bytes.size() >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B)
    throw data_error(fmt::format("{}: still gzip-compressed; gunzip it", name));
  if (bytes.size() < 4)
    throw data_error(
        fmt::format("{}: truncated: {} bytes, no complete IDX header", name, bytes.size()));
  if (bytes[0] != 0 || bytes[1] != 0)
    throw data_error(
        fmt::format("{}: bad magic {:02x}{:02x}{:02x}{:02x}: first two bytes must be zero", name,
                    bytes[0], bytes[1], bytes[2], bytes[3]));
  IdxArray a;
  a.type = bytes[2];
  const int tsize = type_size(a.type);
  if (tsize == 0) throw data_error(fmt::format("{}: unknown IDX data type 0x{:02x}", name, a.type));
  const int ndim = bytes[3];
  if (ndim == 0) throw data_error(fmt::format("{}: IDX header declares zero dimensions", name));
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(ndim);
  if (bytes.size() < header)
    throw data_error(fmt::format("{}: truncated: header needs {} bytes, file has {}", name, header,
                                 bytes.size()));
  uint64_t elements = 1;
  for (int i = 0; i < ndim; ++i) {
    const uint32_t d = be32(bytes.data() + 4 + 4 * i);
    if (d == 0) throw data_error(fmt::format("{}: dimension {} is zero", name, i));
    // Overflow guard: elements stays <= 2^58, so elements * type size (<= 8) plus the
    // header fits in 64 bits (a 2^62 bound let f32/f64 headers wrap to a tiny size).
    if (elements > (uint64_t{1} << 58) / d)
      throw data_error(fmt::format("{}: dimensions overflow 64 bits", name));
    elements *= d;
    a.dims.push_back(d);
  }
  const uint64_t expected = header + elements * static_cast<uint64_t>(tsize);
  if (bytes.size() < expected)
    throw data_error(fmt::format("{}: truncated: header promises {} bytes, file has {}", name,
                                 expected, bytes.size()));
  if (bytes.size() > expected)
    throw data_error(fmt::format("{}: {} trailing bytes after the {} the header describes", name,
                                 bytes.size() - expected, expected));
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

IdxArray read_idx(const std::string& path) {
  if (!something_at(path))
    throw data_error(fmt::format("{}: no such file; {}", path, kHowToGetData));
  check_regular_file(path, ExitCode::kData, "IDX file");
  // The header is checked against the file size before the whole file is read:
  // a valid header on a huge (or sparse) file must not cost its size in memory.
  uint64_t file_size = 0;
  const std::vector<uint8_t> head =
      read_file_head(path, 4 + 4 * 255, file_size, ExitCode::kData, "IDX file");
  const bool gz = head.size() >= 2 && head[0] == 0x1F && head[1] == 0x8B;
  if (gz) return parse_idx(read_gzip(path), path);
  const uint64_t promised = idx_promised_bytes(head);
  if (promised != 0 && file_size < promised)
    throw data_error(fmt::format("{}: truncated: header promises {} bytes, file has {}", path,
                                 promised, file_size));
  if (promised != 0 && file_size > promised)
    throw data_error(fmt::format("{}: {} trailing bytes after the {} the header describes", path,
                                 file_size - promised, promised));
  return parse_idx(read_plain(path), path);
}

namespace {

std::string find_file(const std::string& dir, const std::string& base) {
  const std::string raw = dir + "/" + base;
  if (file_exists(raw)) return raw;
  if (file_exists(raw + ".gz")) return raw + ".gz";
  // A directory, FIFO or looping link under the expected name: say what it is.
  if (something_at(raw)) check_regular_file(raw, ExitCode::kData, "MNIST IDX file");
  if (something_at(raw + ".gz")) check_regular_file(raw + ".gz", ExitCode::kData, "MNIST IDX file");
  throw data_error(fmt::format("{}: no such file (nor {}.gz); {}", raw, raw, kHowToGetData));
}

}  // namespace

Dataset load_split(const std::string& dir, Split split, int64_t expected_pixels) {
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  Dataset ds;
  ds.images_path = find_file(dir, prefix + "-images-idx3-ubyte");
  ds.labels_path = find_file(dir, prefix + "-labels-idx1-ubyte");

  IdxArray images = read_idx(ds.images_path);
  IdxArray labels = read_idx(ds.labels_path);
  if (images.type != 0x08 || images.dims.size() != 3)
    throw data_error(fmt::format(
        "{}: expected images (u8, 3 dimensions), found type 0x{:02x} with {} dimension(s){}",
        ds.images_path, images.type, images.dims.size(),
        images.dims.size() == 1 ? " (a labels file? images and labels swapped?)" : ""));
  if (labels.type != 0x08 || labels.dims.size() != 1)
    throw data_error(fmt::format(
        "{}: expected labels (u8, 1 dimension), found type 0x{:02x} with {} dimension(s){}",
        ds.labels_path, labels.type, labels.dims.size(),
        labels.dims.size() == 3 ? " (an images file? images and labels swapped?)" : ""));
  ds.count = images.dims[0];
  ds.rows = images.dims[1];
  ds.cols = images.dims[2];
  if (ds.rows * ds.cols != expected_pixels)
    throw data_error(fmt::format("{}: images are {}x{} = {} pixels; the model expects {}",
                                 ds.images_path, ds.rows, ds.cols, ds.rows * ds.cols,
                                 expected_pixels));
  if (labels.dims[0] != images.dims[0])
    throw data_error(fmt::format("{} has {} images but {} has {} labels", ds.images_path,
                                 images.dims[0], ds.labels_path, labels.dims[0]));
  for (std::size_t i = 0; i < labels.data.size(); ++i)
    if (labels.data[i] >= kClasses)
      throw data_error(fmt::format("{}: label {} at index {} is outside 0-{}", ds.labels_path,
                                   labels.data[i], i, kClasses - 1));
  ds.images = std::move(images.data);
  ds.labels = std::move(labels.data);
  return ds;
}

}  // namespace mlp
