// The only translation unit that includes dlib (see dlib.h for why).
// Network types are copied verbatim from dlib's examples: the model files are
// serialized instances of exactly these types.

// dlib::fatal_error's constructor aborts the process when it is the second
// fatal_error of the process ("Two fatal errors have been detected"), unless
// DLIB_NO_ABORT_ON_2ND_FATAL_ERROR is defined before dlib/error.h is read:
// every entry point below turns a fatal_error into an error string, so every
// one must be survivable, not only the first.  dlib.go passes -D too; this
// makes the file safe on its own.  The define alone reaches only the errors
// raised from dlib's headers compiled here: see FG_KEEP_CHECK below for the
// ones libdlib.so raises itself.
#ifndef DLIB_NO_ABORT_ON_2ND_FATAL_ERROR
#define DLIB_NO_ABORT_ON_2ND_FATAL_ERROR
#endif

#include "dlib.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <dlib/dnn.h>
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>

using namespace dlib;

namespace {

// dnn_face_recognition_ex.cpp
template <template <int, template <typename> class, int, typename> class block,
          int N, template <typename> class BN, typename SUBNET>
using residual = add_prev1<block<N, BN, 1, tag1<SUBNET>>>;
template <template <int, template <typename> class, int, typename> class block,
          int N, template <typename> class BN, typename SUBNET>
using residual_down =
    add_prev2<avg_pool<2, 2, 2, 2, skip1<tag2<block<N, BN, 2, tag1<SUBNET>>>>>>;
template <int N, template <typename> class BN, int stride, typename SUBNET>
using block = BN<con<N, 3, 3, 1, 1, relu<BN<con<N, 3, 3, stride, stride, SUBNET>>>>>;
template <int N, typename SUBNET>
using ares = relu<residual<block, N, affine, SUBNET>>;
template <int N, typename SUBNET>
using ares_down = relu<residual_down<block, N, affine, SUBNET>>;
template <typename SUBNET> using alevel0 = ares_down<256, SUBNET>;
template <typename SUBNET>
using alevel1 = ares<256, ares<256, ares_down<256, SUBNET>>>;
template <typename SUBNET>
using alevel2 = ares<128, ares<128, ares_down<128, SUBNET>>>;
template <typename SUBNET>
using alevel3 = ares<64, ares<64, ares<64, ares_down<64, SUBNET>>>>;
template <typename SUBNET>
using alevel4 = ares<32, ares<32, ares<32, SUBNET>>>;
using anet_type = loss_metric<fc_no_bias<
    128, avg_pool_everything<alevel0<alevel1<alevel2<alevel3<alevel4<max_pool<
             3, 3, 2, 2,
             relu<affine<con<32, 7, 7, 2, 2, input_rgb_image_sized<150>>>>>>>>>>>>>;

// dnn_mmod_face_detection_ex.cpp
template <long num_filters, typename SUBNET>
using con5d = con<num_filters, 5, 5, 2, 2, SUBNET>;
template <long num_filters, typename SUBNET>
using con5 = con<num_filters, 5, 5, 1, 1, SUBNET>;
template <typename SUBNET>
using downsampler = relu<affine<
    con5d<32, relu<affine<con5d<32, relu<affine<con5d<16, SUBNET>>>>>>>>>;
template <typename SUBNET> using rcon5 = relu<affine<con5<45, SUBNET>>>;
using mmod_type = loss_mmod<con<
    1, 9, 9, 1, 1,
    rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<pyramid_down<6>>>>>>>>;

// Chip settings shared by enrolment and matching: changing them changes
// every descriptor, so they are constants, not options.
const unsigned long kChipSize = 150;
const double kChipPadding = 0.25;

void set_err(char **err, const char *msg) {
  if (err != nullptr) *err = strdup(msg);
}

// fatal_error_here raises a dlib::fatal_error from this translation unit.
__attribute__((noinline)) void fatal_error_here(const std::string &msg) {
  throw dlib::fatal_error(dlib::EBROKEN_ASSERT, msg);
}

}  // namespace

// FG_KEEP_CHECK: Debian's libdlib.so was built without
// DLIB_NO_ABORT_ON_2ND_FATAL_ERROR, and its fatal errors (cpu_dlib.cpp's
// convolution and tensor size assertions, the ones a tiny CNN input used to
// hit) are counted by its own copy of the inline
// fatal_error::check_for_previous_fatal_errors(), which aborts on the second.
// libdlib.so calls that function through its PLT (it is an exported weak
// symbol), so an out-of-line copy in the executable, built here with the
// define (its body is a bare return), interposes it for the whole process.
// The function is private and inline: taking its address in an explicit
// instantiation (where access is not checked) makes the compiler emit the
// copy.  TestFatalErrorsDoNotAbort checks both kinds of fatal error.
template <void (dlib::fatal_error::*F)()>
struct fg_keep_member {
  static void (dlib::fatal_error::*const kept)();
};
template <void (dlib::fatal_error::*F)()>
void (dlib::fatal_error::*const fg_keep_member<F>::kept)() = F;
template struct fg_keep_member<&dlib::fatal_error::check_for_previous_fatal_errors>;

namespace {

fg_rect to_fg(const rectangle &r, double confidence) {
  fg_rect o;
  o.left = (int)r.left();
  o.top = (int)r.top();
  o.right = (int)r.right();
  o.bottom = (int)r.bottom();
  o.confidence = confidence;
  return o;
}

rectangle from_fg(const fg_rect &r) {
  return rectangle(r.left, r.top, r.right, r.bottom);
}

}  // namespace

struct fg_models {
  shape_predictor sp;  // operator() is const: safe to share across threads
  anet_type net;       // prototype, copied per worker
  std::unique_ptr<mmod_type> mmod;
};

struct fg_worker {
  const fg_models *models;
  frontal_face_detector hog;
  anet_type net;
  std::unique_ptr<mmod_type> mmod;  // copied lazily: ~300 MB of activations
};

struct fg_image {
  matrix<rgb_pixel> pix;
};

extern "C" {

fg_models *fg_models_load(const char *shape_path, const char *resnet_path,
                          const char *mmod_path, char **err) {
  std::string stage;
  try {
    std::unique_ptr<fg_models> m(new fg_models);
    stage = std::string("landmark model ") + shape_path;
    deserialize(shape_path) >> m->sp;
    stage = std::string("descriptor network ") + resnet_path;
    deserialize(resnet_path) >> m->net;
    if (mmod_path != nullptr && mmod_path[0] != 0) {
      stage = std::string("CNN detector ") + mmod_path;
      m->mmod.reset(new mmod_type);
      deserialize(mmod_path) >> *m->mmod;
    }
    return m.release();
  } catch (const std::exception &e) {
    set_err(err, (stage + ": " + e.what()).c_str());
  } catch (...) {
    set_err(err, (stage + ": unknown error").c_str());
  }
  return nullptr;
}

void fg_models_free(fg_models *m) { delete m; }

int fg_models_parts(const fg_models *m) {
  return (int)m->sp.num_parts();
}

int fg_models_has_cnn(const fg_models *m) { return m->mmod ? 1 : 0; }

fg_worker *fg_worker_new(const fg_models *m, char **err) {
  try {
    std::unique_ptr<fg_worker> w(new fg_worker);
    w->models = m;
    w->hog = get_frontal_face_detector();
    w->net = m->net;
    return w.release();
  } catch (const std::exception &e) {
    set_err(err, e.what());
  } catch (...) {
    set_err(err, "unknown error");
  }
  return nullptr;
}

void fg_worker_free(fg_worker *w) { delete w; }

fg_image *fg_image_new(const unsigned char *rgb, int width, int height,
                       int stride, char **err) {
  // Sizes in size_t: 3 * width overflows int past about 715 M pixels a row.
  if (width <= 0 || height <= 0 || stride <= 0 ||
      (size_t)stride < 3 * (size_t)width) {
    set_err(err, "invalid image dimensions");
    return nullptr;
  }
  try {
    std::unique_ptr<fg_image> img(new fg_image);
    img->pix.set_size(height, width);
    for (int y = 0; y < height; y++) {
      const unsigned char *row = rgb + (size_t)y * (size_t)stride;
      for (int x = 0; x < width; x++) {
        const unsigned char *p = row + 3 * (size_t)x;
        img->pix(y, x) = rgb_pixel(p[0], p[1], p[2]);
      }
    }
    return img.release();
  } catch (const std::exception &e) {
    set_err(err, e.what());
  } catch (...) {
    set_err(err, "unknown error");
  }
  return nullptr;
}

void fg_image_free(fg_image *img) { delete img; }

int fg_detect_hog(fg_worker *w, const fg_image *img, fg_rect *out, int max,
                  char **err) {
  try {
    std::vector<rect_detection> dets;
    w->hog(img->pix, dets);
    for (size_t i = 0; i < dets.size() && (int)i < max; i++) {
      out[i] = to_fg(dets[i].rect, dets[i].detection_confidence);
    }
    return (int)dets.size();
  } catch (const std::exception &e) {
    set_err(err, e.what());
  } catch (...) {
    set_err(err, "unknown error");
  }
  return -1;
}

int fg_detect_cnn(fg_worker *w, const fg_image *img, fg_rect *out, int max,
                  char **err) {
  try {
    if (!w->models->mmod) {
      set_err(err, "CNN detector model not loaded");
      return -1;
    }
    if (img->pix.nr() < FG_MIN_CNN_SIDE || img->pix.nc() < FG_MIN_CNN_SIDE) {
      set_err(err, ("image " + std::to_string(img->pix.nc()) + "x" +
                    std::to_string(img->pix.nr()) +
                    " too small for CNN detection: each side must be at least " +
                    std::to_string(FG_MIN_CNN_SIDE) + " px")
                       .c_str());
      return -1;
    }
    if (!w->mmod) w->mmod.reset(new mmod_type(*w->models->mmod));
    std::vector<mmod_rect> dets = (*w->mmod)(img->pix);
    for (size_t i = 0; i < dets.size() && (int)i < max; i++) {
      out[i] = to_fg(dets[i].rect, dets[i].detection_confidence);
    }
    return (int)dets.size();
  } catch (const std::exception &e) {
    set_err(err, e.what());
  } catch (...) {
    set_err(err, "unknown error");
  }
  return -1;
}

int fg_catch_fatal_errors(char **err) {
  int caught = 0;
  try {
    fatal_error_here("fg_catch_fatal_errors: a fatal_error raised in dlib.cc");
  } catch (const std::exception &e) {
    set_err(err, e.what());
    caught++;
  }
  try {
    // Raised inside libdlib.so: cpu::affine_transform asserts equal sizes.
    resizable_tensor dest(1, 1, 1, 2), src(1, 1, 1, 3);
    dest = 0;
    src = 0;
    tt::affine_transform(dest, src, 1, 0);
  } catch (const std::exception &e) {
    if (err != nullptr && *err != nullptr) free(*err);
    set_err(err, e.what());
    caught++;
  }
  return caught;
}

int fg_landmarks(const fg_models *m, const fg_image *img, const fg_rect *r,
                 int *xy, char **err) {
  try {
    full_object_detection shape = m->sp(img->pix, from_fg(*r));
    int n = (int)shape.num_parts();
    if (n > FG_MAX_PARTS) {
      set_err(err, "landmark model has too many parts");
      return -1;
    }
    for (int i = 0; i < n; i++) {
      xy[2 * i] = (int)shape.part(i).x();
      xy[2 * i + 1] = (int)shape.part(i).y();
    }
    return n;
  } catch (const std::exception &e) {
    set_err(err, e.what());
  } catch (...) {
    set_err(err, "unknown error");
  }
  return -1;
}

int fg_descriptors(fg_worker *w, const fg_image *img, const fg_rect *rects,
                   const int *xy, int nparts, int n, float *out, char **err) {
  try {
    std::vector<matrix<rgb_pixel>> chips((size_t)n);
    for (int i = 0; i < n; i++) {
      std::vector<point> parts((size_t)nparts);
      const int *p = xy + (size_t)i * 2 * (size_t)nparts;
      for (int j = 0; j < nparts; j++) parts[j] = point(p[2 * j], p[2 * j + 1]);
      full_object_detection shape(from_fg(rects[i]), parts);
      extract_image_chip(img->pix,
                         get_face_chip_details(shape, kChipSize, kChipPadding),
                         chips[i]);
    }
    std::vector<matrix<float, 0, 1>> descs = w->net(chips, 16);
    for (int i = 0; i < n; i++) {
      if (descs[i].size() != FG_DESCRIPTOR_LEN) {
        set_err(err, "descriptor network returned the wrong length");
        return -1;
      }
      for (int j = 0; j < FG_DESCRIPTOR_LEN; j++) {
        out[(size_t)i * FG_DESCRIPTOR_LEN + j] = descs[i](j);
      }
    }
    return 0;
  } catch (const std::exception &e) {
    set_err(err, e.what());
  } catch (...) {
    set_err(err, "unknown error");
  }
  return -1;
}

}  // extern "C"
