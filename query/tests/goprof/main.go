// Command goprof writes real runtime/pprof profiles for use as test fixtures.
//
// Usage: go run . -out DIR [-cpu N] [-seconds S]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"time"
)

var (
	sink    uint64
	scratch = make([]int, 1<<15)
	numBuf  = make([]byte, 0, 32)
	keep    [][]byte // keeps heap allocations alive so inuse_* values are nonzero
)

// The CPU workload avoids allocating: with MemProfileRate=1 every allocation
// records a stack trace, which would otherwise dominate the CPU profiles.

//go:noinline
func hashLoop(n int) {
	h := uint64(14695981039346656037)
	for i := 0; i < n; i++ {
		h = (h ^ uint64(i&0xff)) * 1099511628211
	}
	sink += h
}

//go:noinline
func sortWork(n int) {
	xs := scratch[:n]
	for i := range xs {
		xs[i] = (i * 7919) % n
	}
	sort.Ints(xs)
	sink += uint64(xs[n/2])
}

//go:noinline
func parseWork(n int) {
	for i := 0; i < n; i++ {
		numBuf = strconv.AppendInt(numBuf[:0], int64(i*31), 10)
		v := uint64(0)
		for _, c := range numBuf {
			v = v*10 + uint64(c-'0')
		}
		sink += v
	}
}

//go:noinline
func workA() {
	hashLoop(1000000)
	sortWork(1 << 15)
}

//go:noinline
func workB() { innerB() }

//go:noinline
func innerB() {
	parseWork(100000)
	hashLoop(1000000)
}

// burn runs the workload in labeled regions until d has elapsed.
func burn(d time.Duration) {
	ctx := context.Background()
	for end := time.Now().Add(d); time.Now().Before(end); {
		pprof.Do(ctx, pprof.Labels("worker", "alpha"), func(context.Context) { workA() })
		pprof.Do(ctx, pprof.Labels("worker", "beta"), func(context.Context) { workB() })
	}
}

//go:noinline
func allocSmall() {
	for i := 0; i < 1000; i++ {
		if b := make([]byte, 64); i%4 == 0 {
			keep = append(keep, b)
		}
	}
}

//go:noinline
func allocLarge() {
	for i := 0; i < 50; i++ {
		if b := make([]byte, 16<<10); i%2 == 0 {
			keep = append(keep, b)
		}
	}
}

// create opens path, passes the file to write, and closes it.
func create(path string, write func(f *os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func main() {
	runtime.MemProfileRate = 1
	out := flag.String("out", "", "output directory (required)")
	n := flag.Int("cpu", 3, "number of CPU profiles")
	secs := flag.Float64("seconds", 1.5, "seconds of CPU work per profile")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: go run . -out DIR [-cpu N] [-seconds S]")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(2)
	check(os.MkdirAll(*out, 0o755))
	d := time.Duration(*secs * float64(time.Second))
	for i := 1; i <= *n; i++ {
		check(create(filepath.Join(*out, fmt.Sprintf("cpu-%d.pb.gz", i)), func(f *os.File) error {
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			burn(d)
			pprof.StopCPUProfile()
			return nil
		}))
	}
	allocSmall()
	allocLarge()
	runtime.GC()
	check(create(filepath.Join(*out, "heap.pb.gz"), func(f *os.File) error {
		return pprof.Lookup("heap").WriteTo(f, 0)
	}))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "goprof:", err)
		os.Exit(1)
	}
}
