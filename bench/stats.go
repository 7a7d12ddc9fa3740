package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// quantile returns the q-quantile of xs (0 ≤ q ≤ 1), interpolating
// between the closest ranks. It does not change xs.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

func median(xs []float64) float64 { return quantile(xs, 0.5) }

// ms turns a duration into milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMS(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func fmtRatio(v float64) string { return fmt.Sprintf("%.3f", v) }

func fmtMiBs(bytes int64, d time.Duration) string {
	return fmt.Sprintf("%.0f MiB/s", float64(bytes)/(1<<20)/d.Seconds())
}
