// Per-order line summaries on babelmr, in Go with the standard library only: a streaming reducer.
//
//	map:    passes its lineitem rows through (l_orderkey, l_linenumber, l_quantity, l_shipdate); babelmr
//	        partitions them by l_orderkey.
//	orders: gets its partition sorted by l_orderkey, then l_shipdate, then l_linenumber (the stage's
//	        "sort") and writes one row per order: lines, total quantity, first and last ship date, and the
//	        line number of the first line shipped.
//
// The reducer reads one row at a time and keeps only the current order in memory, whatever the size of
// its partition: it can, because babelmr hands it every order's rows together and in order. It checks
// that promise row by row and fails loudly if the input is not grouped and sorted (a job without "sort").
// Both modes read in.csv (MR_INPUT) and write out.csv (MR_OUTPUT).
package main

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

var inputColumns = []string{"l_orderkey", "l_linenumber", "l_quantity", "l_shipdate"}

func main() {
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[len(os.Args)-1] // babelmr appends the mode as the last argument
	}
	var err error
	switch mode {
	case "map":
		err = run(passThrough)
	case "orders":
		err = run(summarize)
	default:
		err = fmt.Errorf("usage: %s map|orders", os.Args[0])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", mode, err)
		os.Exit(1)
	}
}

// run opens the task's input and output and runs one mode's step over them.
func run(step func(r *csv.Reader, col []int, w *csv.Writer) error) error {
	in, err := os.Open(env("MR_INPUT", "in.csv"))
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(env("MR_OUTPUT", "out.csv"))
	if err != nil {
		return err
	}
	buf := bufio.NewWriterSize(out, 1<<20)
	w := csv.NewWriter(buf)
	r := csv.NewReader(bufio.NewReaderSize(in, 1<<20))
	r.ReuseRecord = true
	col, err := columns(r, inputColumns...)
	if err == nil {
		err = step(r, col, w)
	}
	w.Flush()
	if err == nil {
		err = w.Error()
	}
	if err == nil {
		err = buf.Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// passThrough copies the four columns of every row.
func passThrough(r *csv.Reader, col []int, w *csv.Writer) error {
	w.Write(inputColumns)
	row := make([]string, len(col))
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		for i, c := range col {
			row[i] = rec[c]
		}
		w.Write(row)
	}
}

// order is the one group held in memory: the summary of the current order so far.
type order struct {
	key, lines, quantity, firstLine int64 // quantity in hundredths
	firstShip, lastShip             string
	lastLine                        int64
}

// summarize streams over rows sorted by (l_orderkey, l_shipdate, l_linenumber), one order at a time.
func summarize(r *csv.Reader, col []int, w *csv.Writer) error {
	w.Write([]string{"l_orderkey", "lines", "quantity", "first_ship", "last_ship", "first_line"})
	var cur *order
	var groups int64
	flush := func() {
		if cur != nil {
			w.Write([]string{strconv.FormatInt(cur.key, 10), strconv.FormatInt(cur.lines, 10),
				fmt.Sprintf("%d.%02d", cur.quantity/100, cur.quantity%100), cur.firstShip, cur.lastShip,
				strconv.FormatInt(cur.firstLine, 10)})
			groups++
		}
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		line, _ := r.FieldPos(col[0])
		key, err := strconv.ParseInt(rec[col[0]], 10, 64)
		if err != nil {
			return fmt.Errorf("line %d: l_orderkey %q: %w", line, rec[col[0]], err)
		}
		number, err := strconv.ParseInt(rec[col[1]], 10, 64)
		if err != nil {
			return fmt.Errorf("line %d: l_linenumber %q: %w", line, rec[col[1]], err)
		}
		quantity, err := hundredths(rec[col[2]])
		if err != nil {
			return fmt.Errorf("line %d: l_quantity %q: %w", line, rec[col[2]], err)
		}
		ship := rec[col[3]] // ISO dates (YYYY-MM-DD) order as text
		if ship == "" || rec[col[0]] == "" {
			return fmt.Errorf("line %d: a null l_orderkey or l_shipdate: lineitem has none", line)
		}
		switch {
		case cur != nil && key < cur.key:
			return fmt.Errorf("line %d: order %d after order %d: the input is not sorted by l_orderkey "+
				"(give the stage \"sort\")", line, key, cur.key)
		case cur != nil && key == cur.key:
			if ship < cur.lastShip || (ship == cur.lastShip && number <= cur.lastLine) {
				return fmt.Errorf("line %d: order %d: (%s, %d) after (%s, %d): not sorted by l_shipdate, "+
					"l_linenumber within the order", line, key, ship, number, cur.lastShip, cur.lastLine)
			}
			cur.lines++
			cur.quantity += quantity
			cur.lastShip, cur.lastLine = ship, number
		default: // a new order: the previous one is complete, write it and forget it
			flush()
			cur = &order{key: key, lines: 1, quantity: quantity, firstLine: number, firstShip: ship,
				lastShip: ship, lastLine: number}
		}
	}
	flush()
	fmt.Fprintf(os.Stderr, "reporter:counter:orders,orders,%d\n", groups)
	return nil
}

// hundredths parses a decimal with at most two fraction digits ("17.00", "3", "0.5") exactly.
func hundredths(s string) (int64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 2 {
		return 0, fmt.Errorf("more than two decimal places")
	}
	frac += strings.Repeat("0", 2-len(frac))
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseUint(frac, 10, 8)
	if err != nil || strings.HasPrefix(whole, "-") {
		return 0, fmt.Errorf("not a non-negative decimal")
	}
	return w*100 + int64(f), nil
}

// columns reads the header row and returns the positions of the named columns. An empty file (no
// header) is an input without rows: then the positions are all 0 and the first read gives io.EOF.
func columns(r *csv.Reader, names ...string) ([]int, error) {
	header, err := r.Read()
	if err == io.EOF {
		return make([]int, len(names)), nil
	} else if err != nil {
		return nil, err
	}
	pos := make([]int, len(names))
	for i, name := range names {
		pos[i] = -1
		for j, h := range header {
			if h == name {
				pos[i] = j
			}
		}
		if pos[i] < 0 {
			return nil, fmt.Errorf("input has no column %q (columns: %s)", name, strings.Join(header, ", "))
		}
	}
	return pos, nil
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
