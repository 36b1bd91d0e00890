//go:build goexperiment.simd && amd64

package gallery

import "simd/archsimd"

func init() {
	if archsimd.X86.AVX2() {
		streamers = append(streamers, streamer{"avx2", streamAVX2})
	}
	if archsimd.X86.AVX512() {
		streamers = append(streamers, streamer{"avx512", streamAVX512})
	}
}

// streamAVX2 reads codes 128 bytes (a row) at a time in 32-byte loads.
func streamAVX2(codes []int8) uint64 {
	var a, b, c, d archsimd.Int8x32
	for i := 0; i+128 <= len(codes); i += 128 {
		p := (*[128]int8)(codes[i:])
		a = a.Or(archsimd.LoadInt8x32((*[32]int8)(p[0:])))
		b = b.Or(archsimd.LoadInt8x32((*[32]int8)(p[32:])))
		c = c.Or(archsimd.LoadInt8x32((*[32]int8)(p[64:])))
		d = d.Or(archsimd.LoadInt8x32((*[32]int8)(p[96:])))
	}
	var out [32]int8
	a.Or(b).Or(c.Or(d)).Store(&out)
	archsimd.ClearAVXUpperBits()
	return foldBytes(out[:])
}

// streamAVX512 reads codes 256 bytes (two rows) at a time in 64-byte loads.
func streamAVX512(codes []int8) uint64 {
	var a, b, c, d archsimd.Int8x64
	for i := 0; i+256 <= len(codes); i += 256 {
		p := (*[256]int8)(codes[i:])
		a = a.Or(archsimd.LoadInt8x64((*[64]int8)(p[0:])))
		b = b.Or(archsimd.LoadInt8x64((*[64]int8)(p[64:])))
		c = c.Or(archsimd.LoadInt8x64((*[64]int8)(p[128:])))
		d = d.Or(archsimd.LoadInt8x64((*[64]int8)(p[192:])))
	}
	var out [64]int8
	a.Or(b).Or(c.Or(d)).Store(&out)
	archsimd.ClearAVXUpperBits()
	return foldBytes(out[:])
}

func foldBytes(bs []int8) uint64 {
	var s uint64
	for _, x := range bs {
		s = s<<1 ^ uint64(uint8(x))
	}
	return s
}
