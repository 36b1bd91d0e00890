// Package biometrics turns camera frames into face descriptors with dlib's
// face recognition model, through a small cgo binding over Debian's dlib.
//
// The API follows github.com/Kagami/go-face (a Recognizer with Recognize,
// RecognizeSingle, RecognizeFile, RecognizeCNN...; a Face with Rectangle,
// Descriptor and Shapes) so that swapping to go-face where it is available
// is a small change. Differences: images are decoded in Go (JPEG and PNG),
// which bounds their size before any pixel is allocated and keeps corrupt
// input away from C; calls take a context where they may wait for a worker;
// classification lives in package gallery, with measured thresholds.
//
// Matching policy (1:1 verification and bounded 1:N identification) is in
// biometrics/gallery, error-rate measurement in biometrics/eval, and the
// encrypted template store in biometrics/templates.
package biometrics
