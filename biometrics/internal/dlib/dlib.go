// Package dlib is Faregate's thin cgo binding over Debian's dlib 19.24: HOG
// and MMOD face detection, landmarks and the ResNet face descriptor.
//
// It is deliberately small and stable: every change to a file in this package
// recompiles dlib.cc, which takes 20-40 s and 1-2 GB. Policy (pools, image
// decoding, sorting, errors for callers) lives in package biometrics.
//
// Concurrency: a Models value is read-only after loading and may be shared,
// and Close may race with its other methods (they return ErrClosed or false
// after it); a Worker holds networks with internal state and must be used by
// one goroutine at a time. An Image is read-only and may be shared.
//
// No call aborts the process: dlib.cc is compiled with
// DLIB_NO_ABORT_ON_2ND_FATAL_ERROR, without which dlib aborts on its second
// dlib::fatal_error, and DetectCNN refuses images dlib's MMOD network
// corrupts memory on (see MinCNNSide).
package dlib

/*
#cgo CXXFLAGS: -std=c++17 -O2 -g0 -Wno-deprecated-declarations -DDLIB_NO_ABORT_ON_2ND_FATAL_ERROR
#cgo LDFLAGS: -ldlib -lblas -llapack
#include <stdlib.h>
#include "dlib.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"image"
	"runtime"
	"sync"
	"unsafe"
)

// DescriptorLen is the length of a face descriptor.
const DescriptorLen = C.FG_DESCRIPTOR_LEN

// MaxParts is the most landmark points a supported shape model has.
const MaxParts = C.FG_MAX_PARTS

// MinCNNSide is the smallest width and height, in pixels, DetectCNN accepts
// (32). dlib's MMOD input layer writes outside its tensor on images 2-9 px on
// a side (8x300, 6x480, 9x480 ...) and its convolutions raise fatal_error
// below about 5 px; the network's three 5x5 stride-2 convolutions without
// padding leave no column at all below 29 px (32 -> 14 -> 5 -> 1), and its
// 40x40 px window finds no face smaller than a side it refuses. The full
// reasoning is at FG_MIN_CNN_SIDE in dlib.h.
const MinCNNSide = C.FG_MIN_CNN_SIDE

// ErrClosed is returned by calls on closed Models (or Workers of them).
var ErrClosed = errors.New("dlib: models closed")

// cError converts and frees a C error string.
func cError(prefix string, e *C.char) error {
	if e == nil {
		return errors.New(prefix + ": unknown error")
	}
	defer C.free(unsafe.Pointer(e))
	return errors.New(prefix + ": " + C.GoString(e))
}

// Models holds the landmark model, the descriptor network prototype and,
// optionally, the MMOD CNN detector prototype.
type Models struct {
	// mu guards p: Close takes it to write, every call that reaches the C
	// models (theirs and their Workers') to read, so Close waits for calls
	// in flight and calls after it see p == nil.
	mu sync.RWMutex
	p  *C.fg_models
}

// LoadModels reads the models from files. mmodPath may be empty.
func LoadModels(shapePath, resnetPath, mmodPath string) (*Models, error) {
	cs := C.CString(shapePath)
	defer C.free(unsafe.Pointer(cs))
	cr := C.CString(resnetPath)
	defer C.free(unsafe.Pointer(cr))
	cm := C.CString(mmodPath)
	defer C.free(unsafe.Pointer(cm))
	var e *C.char
	p := C.fg_models_load(cs, cr, cm, &e)
	if p == nil {
		return nil, cError("dlib: load models", e)
	}
	return &Models{p: p}, nil
}

// Close frees the models, after calls in flight on them or their Workers.
// Calls afterwards return ErrClosed (HasCNN false, Parts 0).
func (m *Models) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p != nil {
		C.fg_models_free(m.p)
		m.p = nil
	}
}

// Parts returns the number of landmark points per face (5 or 68), or 0
// after Close.
func (m *Models) Parts() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.p == nil {
		return 0
	}
	return int(C.fg_models_parts(m.p))
}

// HasCNN reports whether the MMOD detector was loaded; false after Close.
func (m *Models) HasCNN() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.p != nil && C.fg_models_has_cnn(m.p) != 0
}

// Worker holds one thread's copies of the stateful networks.
type Worker struct {
	p *C.fg_worker
	m *Models
}

// NewWorker copies the descriptor network and a HOG detector. The MMOD
// network is copied on the first DetectCNN call.
func NewWorker(m *Models) (*Worker, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.p == nil {
		return nil, ErrClosed
	}
	var e *C.char
	p := C.fg_worker_new(m.p, &e)
	if p == nil {
		return nil, cError("dlib: new worker", e)
	}
	return &Worker{p: p, m: m}, nil
}

// Close frees the worker.
func (w *Worker) Close() {
	if w.p != nil {
		C.fg_worker_free(w.p)
		w.p = nil
	}
}

// Image is an RGB image copied into dlib's memory.
type Image struct {
	p             *C.fg_image
	width, height int
}

// NewImage copies packed 8-bit RGB rows, stride bytes apart.
func NewImage(rgb []byte, width, height, stride int) (*Image, error) {
	if width <= 0 || height <= 0 || stride < 3*width || len(rgb) < (height-1)*stride+3*width {
		return nil, errors.New("dlib: new image: buffer does not match dimensions")
	}
	var e *C.char
	p := C.fg_image_new((*C.uchar)(unsafe.Pointer(&rgb[0])), C.int(width), C.int(height), C.int(stride), &e)
	runtime.KeepAlive(rgb)
	if p == nil {
		return nil, cError("dlib: new image", e)
	}
	return &Image{p: p, width: width, height: height}, nil
}

// Close frees the image.
func (im *Image) Close() {
	if im.p != nil {
		C.fg_image_free(im.p)
		im.p = nil
	}
}

// Rect is a detection: inclusive corners as dlib reports them, and the
// detector's confidence.
type Rect struct {
	Left, Top, Right, Bottom int
	Confidence               float64
}

func (r Rect) toC() C.fg_rect {
	return C.fg_rect{left: C.int(r.Left), top: C.int(r.Top), right: C.int(r.Right), bottom: C.int(r.Bottom), confidence: C.double(r.Confidence)}
}

type detectFunc func(w *C.fg_worker, img *C.fg_image, out *C.fg_rect, max C.int, err **C.char) C.int

func (w *Worker) detect(op string, f detectFunc, im *Image) ([]Rect, error) {
	w.m.mu.RLock()
	defer w.m.mu.RUnlock()
	if w.m.p == nil || w.p == nil {
		return nil, fmt.Errorf("dlib: %s: %w", op, ErrClosed)
	}
	if im.p == nil {
		return nil, errors.New("dlib: " + op + ": image closed")
	}
	buf := make([]C.fg_rect, 16)
	for {
		var e *C.char
		n := f(w.p, im.p, &buf[0], C.int(len(buf)), &e)
		if n < 0 {
			return nil, cError("dlib: "+op, e)
		}
		if int(n) > len(buf) {
			// Rare: more faces than room. Detection is deterministic, so
			// running again with room for all gives the same result.
			buf = make([]C.fg_rect, int(n))
			continue
		}
		rs := make([]Rect, int(n))
		for i := range rs {
			c := buf[i]
			rs[i] = Rect{int(c.left), int(c.top), int(c.right), int(c.bottom), float64(c.confidence)}
		}
		return rs, nil
	}
}

func hog(w *C.fg_worker, img *C.fg_image, out *C.fg_rect, max C.int, err **C.char) C.int {
	return C.fg_detect_hog(w, img, out, max, err)
}

func cnn(w *C.fg_worker, img *C.fg_image, out *C.fg_rect, max C.int, err **C.char) C.int {
	return C.fg_detect_cnn(w, img, out, max, err)
}

// DetectHOG runs dlib's frontal HOG face detector (no upsampling).
func (w *Worker) DetectHOG(im *Image) ([]Rect, error) { return w.detect("HOG detect", hog, im) }

// DetectCNN runs the MMOD CNN face detector. It refuses an image with a
// side below MinCNNSide (so does the C function under it).
func (w *Worker) DetectCNN(im *Image) ([]Rect, error) {
	if im.width < MinCNNSide || im.height < MinCNNSide {
		return nil, fmt.Errorf("dlib: CNN detect: image %dx%d too small for CNN detection: each side must be at least %d px", im.width, im.height, MinCNNSide)
	}
	return w.detect("CNN detect", cnn, im)
}

// CatchFatalErrors raises a dlib::fatal_error in the binding's C++ and one
// inside libdlib, each caught like every call's, and returns how many were
// caught (2) and the last message. Without DLIB_NO_ABORT_ON_2ND_FATAL_ERROR
// in effect for both, a second call aborts the process: it exists for that
// check.
func CatchFatalErrors() (int, error) {
	var e *C.char
	n := int(C.fg_catch_fatal_errors(&e))
	return n, cError("dlib: fatal error", e)
}

// Landmarks returns the landmark points of the face in r.
func (m *Models) Landmarks(im *Image, r Rect) ([]image.Point, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.p == nil {
		return nil, fmt.Errorf("dlib: landmarks: %w", ErrClosed)
	}
	if im.p == nil {
		return nil, errors.New("dlib: landmarks: image closed")
	}
	var xy [2 * MaxParts]C.int
	var e *C.char
	cr := r.toC()
	n := C.fg_landmarks(m.p, im.p, &cr, &xy[0], &e)
	if n < 0 {
		return nil, cError("dlib: landmarks", e)
	}
	pts := make([]image.Point, int(n))
	for i := range pts {
		pts[i] = image.Pt(int(xy[2*i]), int(xy[2*i+1]))
	}
	return pts, nil
}

// Descriptors aligns each face by its rectangle and landmarks (all faces
// with the model's number of points) and computes one descriptor per face
// in a single batch through the network.
func (w *Worker) Descriptors(im *Image, rects []Rect, shapes [][]image.Point) ([][DescriptorLen]float32, error) {
	n := len(rects)
	if n == 0 {
		return nil, nil
	}
	if len(shapes) != n {
		return nil, errors.New("dlib: descriptors: rects and shapes differ in length")
	}
	parts := len(shapes[0])
	if parts == 0 || parts > MaxParts {
		return nil, errors.New("dlib: descriptors: bad landmark count")
	}
	cr := make([]C.fg_rect, n)
	xy := make([]C.int, n*2*parts)
	for i := range rects {
		if len(shapes[i]) != parts {
			return nil, errors.New("dlib: descriptors: faces have different landmark counts")
		}
		cr[i] = rects[i].toC()
		for j, p := range shapes[i] {
			xy[(i*parts+j)*2] = C.int(p.X)
			xy[(i*parts+j)*2+1] = C.int(p.Y)
		}
	}
	w.m.mu.RLock()
	defer w.m.mu.RUnlock()
	if w.m.p == nil || w.p == nil {
		return nil, fmt.Errorf("dlib: descriptors: %w", ErrClosed)
	}
	if im.p == nil {
		return nil, errors.New("dlib: descriptors: image closed")
	}
	out := make([][DescriptorLen]float32, n)
	var e *C.char
	if C.fg_descriptors(w.p, im.p, &cr[0], &xy[0], C.int(parts), C.int(n), (*C.float)(unsafe.Pointer(&out[0][0])), &e) != 0 {
		return nil, cError("dlib: descriptors", e)
	}
	return out, nil
}
