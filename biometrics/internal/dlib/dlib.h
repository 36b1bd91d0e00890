/* Plain C interface to the few dlib pieces Faregate uses.  Everything that
 * includes dlib lives in dlib.cc, one translation unit, because compiling
 * dlib/dnn.h costs 20-40 s and 1-2 GB; this header keeps C++ out of cgo.
 *
 * Ownership: every fg_* object is created and freed by the caller.  Error
 * strings returned through err are malloc'ed; the caller frees them.  No
 * function throws: dlib and std exceptions become error strings.  That holds
 * for every dlib::fatal_error, not only the first: dlib.cc is compiled with
 * DLIB_NO_ABORT_ON_2ND_FATAL_ERROR (without it dlib aborts the process on
 * its second fatal_error) and fg_catch_fatal_errors checks that. */
#ifndef FAREGATE_DLIB_H
#define FAREGATE_DLIB_H

#ifdef __cplusplus
extern "C" {
#endif

#define FG_DESCRIPTOR_LEN 128
#define FG_MAX_PARTS 68

/* FG_MIN_CNN_SIDE is the smallest width and height fg_detect_cnn accepts.
 * dlib's MMOD input layer (input_rgb_image_pyramid<pyramid_down<6>>) writes
 * outside its tensor for images 2-9 px on a side (ASan: a wild write in
 * to_tensor at 8x300, 6x480, 9x480 ...) and its convolutions raise
 * fatal_error below about 5 px.  The network's first three layers are 5x5
 * convolutions of stride 2 without padding, so a side of n px leaves
 * 1+((1+((1+(n-5)/2)-5)/2)-5)/2 columns after them: at least one only from
 * n = 29 (32 -> 14 -> 5 -> 1).  32 keeps every layer non-empty even for a
 * single pyramid level, three times the largest size seen to corrupt memory;
 * and it loses nothing: the detector's window is 40x40 px (the smallest face
 * it finds), larger than a side it refuses. */
#define FG_MIN_CNN_SIDE 32

typedef struct fg_models fg_models; /* read-only after load; shared by workers */
typedef struct fg_worker fg_worker; /* per-goroutine: networks keep state */
typedef struct fg_image fg_image;   /* an RGB image in dlib's layout */

typedef struct {
	int left, top, right, bottom; /* inclusive corners, as dlib::rectangle */
	double confidence;
} fg_rect;

/* fg_models_load reads the landmark model and the ResNet descriptor network;
 * mmod_path may be NULL or empty to leave CNN detection unavailable. */
fg_models *fg_models_load(const char *shape_path, const char *resnet_path,
                          const char *mmod_path, char **err);
void fg_models_free(fg_models *m);
int fg_models_parts(const fg_models *m);   /* landmark points per face */
int fg_models_has_cnn(const fg_models *m); /* 1 if the MMOD net is loaded */

/* fg_worker_new copies the networks and the HOG detector for one thread. */
fg_worker *fg_worker_new(const fg_models *m, char **err);
void fg_worker_free(fg_worker *w);

/* fg_image_new copies packed 8-bit RGB rows (stride bytes apart). */
fg_image *fg_image_new(const unsigned char *rgb, int width, int height,
                       int stride, char **err);
void fg_image_free(fg_image *img);

/* fg_detect_hog and fg_detect_cnn write up to max rectangles into out and
 * return how many faces were found (possibly more than max), or -1.
 * fg_detect_cnn refuses an image with a side below FG_MIN_CNN_SIDE. */
int fg_detect_hog(fg_worker *w, const fg_image *img, fg_rect *out, int max,
                  char **err);
int fg_detect_cnn(fg_worker *w, const fg_image *img, fg_rect *out, int max,
                  char **err);

/* fg_catch_fatal_errors raises a dlib::fatal_error from this translation
 * unit and one from inside libdlib (a tensor size assertion in
 * tt::affine_transform), each caught by the same handlers as every fg_*
 * entry point, and returns how many were caught (2).  Calling it twice in one
 * process aborts unless DLIB_NO_ABORT_ON_2ND_FATAL_ERROR took effect for
 * both; err receives the last message. */
int fg_catch_fatal_errors(char **err);

/* fg_landmarks writes fg_models_parts(m) points as x,y pairs into xy
 * (room for 2*FG_MAX_PARTS ints) and returns the number of points, or -1. */
int fg_landmarks(const fg_models *m, const fg_image *img, const fg_rect *r,
                 int *xy, char **err);

/* fg_descriptors aligns n faces (rects[i] with nparts points at
 * xy[i*2*nparts]) to 150x150 chips with padding 0.25 and writes n*128
 * floats into out.  Returns 0, or -1 on error. */
int fg_descriptors(fg_worker *w, const fg_image *img, const fg_rect *rects,
                   const int *xy, int nparts, int n, float *out, char **err);

#ifdef __cplusplus
}
#endif
#endif
