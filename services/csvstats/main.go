// Command csvstats is GEF's CSV column statistics service. It reads every
// .csv file under its dataset input, and for one numeric column computes
// count, min, max, mean, standard deviation and a histogram.
package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

type stats struct {
	Column  string  `json:"column"`
	Files   int     `json:"files"`
	Count   int64   `json:"count"`
	Skipped int64   `json:"skipped"` // cells that were empty or not numbers
	Min     float64 `json:"min"`
	Max     float64 `json:"max"`
	Mean    float64 `json:"mean"`
	StdDev  float64 `json:"stddev"`
	Bins    []bin   `json:"histogram"`
}

type bin struct {
	From  float64 `json:"from"`
	To    float64 `json:"to"`
	Count int64   `json:"count"`
}

func main() {
	column := flag.String("column", "", "the column: its header name, or its 1-based number with --skip_header unset")
	delimiter := flag.String("delimiter", "comma", "comma, tab or semicolon")
	noHeader := flag.Bool("no_header", false, "the files have no header row; name the column by number")
	bins := flag.Int("bins", 10, "histogram bins")
	in := flag.String("in", "/data", "the dataset directory")
	out := flag.String("out", "/out", "the output directory")
	flag.Parse()
	if err := run(*column, *delimiter, *noHeader, *bins, *in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "csvstats:", err)
		os.Exit(1)
	}
}

func run(column, delimiter string, noHeader bool, nbins int, in, out string) error {
	if column == "" {
		return errors.New("--column is required")
	}
	if nbins < 1 || nbins > 1000 {
		return errors.New("--bins must be between 1 and 1000")
	}
	sep := map[string]rune{"comma": ',', "tab": '\t', "semicolon": ';'}[delimiter]
	if sep == 0 {
		return fmt.Errorf("unknown delimiter %q", delimiter)
	}
	var files []string
	err := filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.EqualFold(filepath.Ext(p), ".csv") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	if len(files) == 0 {
		return errors.New("the dataset holds no .csv files")
	}
	var values []float64
	st := stats{Column: column, Files: len(files)}
	for _, f := range files {
		vals, skipped, err := readColumn(f, column, sep, noHeader)
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		values = append(values, vals...)
		st.Skipped += skipped
		fmt.Printf("%s: %d values\n", filepath.Base(f), len(vals))
	}
	if len(values) == 0 {
		return fmt.Errorf("column %q holds no numbers", column)
	}
	st.Count = int64(len(values))
	st.Min, st.Max = math.Inf(1), math.Inf(-1)
	var sum float64
	for _, v := range values {
		st.Min, st.Max = math.Min(st.Min, v), math.Max(st.Max, v)
		sum += v
	}
	st.Mean = sum / float64(len(values))
	var sq float64
	for _, v := range values {
		sq += (v - st.Mean) * (v - st.Mean)
	}
	st.StdDev = math.Sqrt(sq / float64(len(values)))
	width := (st.Max - st.Min) / float64(nbins)
	st.Bins = make([]bin, nbins)
	for i := range st.Bins {
		st.Bins[i] = bin{From: st.Min + float64(i)*width, To: st.Min + float64(i+1)*width}
	}
	for _, v := range values {
		i := nbins - 1
		if width > 0 {
			i = min(int((v-st.Min)/width), nbins-1)
		}
		st.Bins[i].Count++
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "stats.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	var hist strings.Builder
	hist.WriteString("from\tto\tcount\n")
	for _, b := range st.Bins {
		fmt.Fprintf(&hist, "%g\t%g\t%d\n", b.From, b.To, b.Count)
	}
	if err := os.WriteFile(filepath.Join(out, "histogram.tsv"), []byte(hist.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("%s: n=%d min=%g max=%g mean=%g sd=%g\n", column, st.Count, st.Min, st.Max, st.Mean, st.StdDev)
	return nil
}

func readColumn(path, column string, sep rune, noHeader bool) ([]float64, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma, r.FieldsPerRecord, r.ReuseRecord = sep, -1, true
	idx := -1
	if noHeader {
		n, err := strconv.Atoi(column)
		if err != nil || n < 1 {
			return nil, 0, fmt.Errorf("without a header, --column must be a column number, got %q", column)
		}
		idx = n - 1
	} else {
		head, err := r.Read()
		if err != nil {
			return nil, 0, fmt.Errorf("reading the header: %w", err)
		}
		for i, h := range head {
			if strings.TrimSpace(h) == column {
				idx = i
			}
		}
		if idx < 0 {
			return nil, 0, fmt.Errorf("no column %q in the header", column)
		}
	}
	var vals []float64
	var skipped int64
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return vals, skipped, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if idx >= len(rec) {
			skipped++
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rec[idx]), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			skipped++
			continue
		}
		vals = append(vals, v)
	}
}
