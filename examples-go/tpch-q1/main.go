// TPC-H Q1 (pricing summary report) on babelmr, in Go with the standard library only.
//
//	map:    one share of lineitem -> per (l_returnflag, l_linestatus), the sums and the row count of
//	        the items shipped by 1998-09-02;
//	reduce: all partial sums of its groups -> the totals and averages of Q1, sorted by the two flags.
//
// Both modes read and write CSV: babelmr writes the task's input to in.csv (MR_INPUT), with a header
// row, decimals such as 28351.92 and dates such as 1996-03-13, and reads out.csv (MR_OUTPUT) back with
// the column types the job's "schema" declares. Sums are float64, as in the Python example.
package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// shippedBy is DATE '1998-12-01' - INTERVAL '90' DAY.
var shippedBy = time.Date(1998, 12, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -90)

type flags struct{ returnFlag, lineStatus string }

// sums are the partial sums of one group: map's output, reduce's input.
type sums struct {
	qty, basePrice, discPrice, charge, disc float64
	count                                   int64
}

func (s *sums) add(t *sums) {
	s.qty += t.qty
	s.basePrice += t.basePrice
	s.discPrice += t.discPrice
	s.charge += t.charge
	s.disc += t.disc
	s.count += t.count
}

var partialColumns = []string{"l_returnflag", "l_linestatus", "sum_qty", "sum_base_price", "sum_disc_price",
	"sum_charge", "sum_disc", "count_order"}

func main() {
	steps := map[string]func(*table, *csv.Writer) error{"map": mapLineitem, "reduce": reducePartials}
	if len(os.Args) < 2 || steps[os.Args[len(os.Args)-1]] == nil {
		fail(fmt.Errorf("usage: %s map|reduce", os.Args[0]))
	}
	mode := os.Args[len(os.Args)-1] // babelmr appends the mode as the last argument
	if os.Getenv("MR_WARM") != "" {
		serve(func() error { return run(mode) }) // started once per worker: tasks arrive on fd $MR_WARM_IN
		return
	}
	if err := run(mode); err != nil {
		fail(err)
	}
}

// run does one task in the given mode.
func run(mode string) error {
	steps := map[string]func(*table, *csv.Writer) error{"map": mapLineitem, "reduce": reducePartials}
	in, err := os.Open(env("MR_INPUT", "in.csv"))
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(env("MR_OUTPUT", "out.csv"))
	if err != nil {
		return err
	}
	defer out.Close()
	buf := bufio.NewWriterSize(out, 1<<20)
	w := csv.NewWriter(buf)
	if err := steps[mode](newTable(in), w); err != nil {
		return fmt.Errorf("%s: %w", mode, err)
	}
	if w.Flush(); w.Error() != nil {
		return w.Error()
	}
	if err := buf.Flush(); err != nil {
		return err
	}
	return out.Close()
}

// serve is warm mode (MR_WARM set): it runs run() per task line read from fd $MR_WARM_IN (a JSON object of
// the task's MR_* variables) and answers each on fd $MR_WARM_OUT.
func serve(run func() error) {
	in, _ := strconv.Atoi(os.Getenv("MR_WARM_IN"))
	out, _ := strconv.Atoi(os.Getenv("MR_WARM_OUT"))
	tasks, replies := bufio.NewScanner(os.NewFile(uintptr(in), "tasks")), os.NewFile(uintptr(out), "replies")
	tasks.Buffer(make([]byte, 1<<16), 1<<26)
	for tasks.Scan() {
		var task map[string]string
		err := json.Unmarshal(tasks.Bytes(), &task)
		for k, v := range task {
			os.Setenv(k, v)
		}
		if err == nil {
			if err = os.Chdir(task["MR_WORKDIR"]); err == nil {
				err = run()
			}
		}
		reply := map[string]any{"ok": true}
		if err != nil {
			reply = map[string]any{"error": err.Error()}
		}
		line, _ := json.Marshal(reply)
		replies.Write(append(line, '\n'))
	}
}

// mapLineitem pre-aggregates the items shipped by 1998-09-02 per pair of flags.
func mapLineitem(in *table, out *csv.Writer) error {
	groups := map[flags]*sums{}
	shipped := map[string]bool{} // l_shipdate -> shipped by the cut-off (a few thousand distinct dates)
	err := in.rows([]string{"l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount",
		"l_tax", "l_shipdate"}, func(v []string) error {
		ok, seen := shipped[v[6]]
		if !seen {
			date, err := time.Parse("2006-01-02", v[6])
			if err != nil {
				return fmt.Errorf("l_shipdate: %w", err)
			}
			ok = !date.After(shippedBy)
			shipped[v[6]] = ok
		}
		if !ok {
			return nil
		}
		var n [4]float64 // quantity, extended price, discount, tax
		if err := parseFloats(v[2:6], n[:]); err != nil {
			return err
		}
		key := flags{v[0], v[1]}
		g := groups[key]
		if g == nil {
			key = flags{strings.Clone(v[0]), strings.Clone(v[1])} // v is reused for the next row
			g = &sums{}
			groups[key] = g
		}
		discPrice := n[1] * (1 - n[2])
		g.add(&sums{qty: n[0], basePrice: n[1], discPrice: discPrice, charge: discPrice * (1 + n[3]), disc: n[2],
			count: 1})
		return nil
	})
	if err != nil {
		return err
	}
	out.Write(partialColumns)
	for _, key := range sortedKeys(groups) {
		g := groups[key]
		out.Write([]string{key.returnFlag, key.lineStatus, float(g.qty), float(g.basePrice), float(g.discPrice),
			float(g.charge), float(g.disc), strconv.FormatInt(g.count, 10)})
	}
	return nil
}

// reducePartials adds up the partial sums per pair of flags and derives the averages.
func reducePartials(in *table, out *csv.Writer) error {
	groups := map[flags]*sums{}
	err := in.rows(partialColumns, func(v []string) error {
		var n [5]float64
		if err := parseFloats(v[2:7], n[:]); err != nil {
			return err
		}
		count, err := strconv.ParseInt(v[7], 10, 64)
		if err != nil {
			return fmt.Errorf("count_order: %w", err)
		}
		key := flags{strings.Clone(v[0]), strings.Clone(v[1])}
		if groups[key] == nil {
			groups[key] = &sums{}
		}
		groups[key].add(&sums{n[0], n[1], n[2], n[3], n[4], count})
		return nil
	})
	if err != nil {
		return err
	}
	out.Write([]string{"l_returnflag", "l_linestatus", "sum_qty", "sum_base_price", "sum_disc_price",
		"sum_charge", "avg_qty", "avg_price", "avg_disc", "count_order"})
	for _, key := range sortedKeys(groups) {
		g := groups[key]
		if g.count == 0 {
			return errors.New("a group without rows: count_order is 0")
		}
		n := float64(g.count)
		out.Write([]string{key.returnFlag, key.lineStatus, float(g.qty), float(g.basePrice), float(g.discPrice),
			float(g.charge), float(g.qty / n), float(g.basePrice / n), float(g.disc / n),
			strconv.FormatInt(g.count, 10)})
	}
	return nil
}

// table reads a CSV file with a header row; an empty file is a table without rows.
type table struct {
	r *csv.Reader
}

func newTable(f io.Reader) *table {
	r := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	r.ReuseRecord = true
	return &table{r}
}

// rows calls row with the values of the named columns of every row (the slice is reused).
func (t *table) rows(names []string, row func([]string) error) error {
	header, err := t.r.Read()
	if err == io.EOF {
		return nil
	} else if err != nil {
		return err
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
			return fmt.Errorf("input has no column %q (columns: %s)", name, strings.Join(header, ", "))
		}
	}
	values := make([]string, len(names))
	for {
		rec, err := t.r.Read()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		for i, p := range pos {
			if rec[p] == "" {
				// TPC-H declares these columns NOT NULL; this program does not implement SQL's null
				// semantics (sums and averages that skip nulls), so it refuses them.
				line, _ := t.r.FieldPos(p)
				return fmt.Errorf("line %d: %s is null", line, names[i])
			}
			values[i] = rec[p]
		}
		if err := row(values); err != nil {
			line, _ := t.r.FieldPos(0)
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
}

func parseFloats(fields []string, into []float64) error {
	for i, s := range fields {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		into[i] = v
	}
	return nil
}

// float formats a float64 with the fewest digits that read back as the same value.
func float(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func sortedKeys(groups map[flags]*sums) []flags {
	keys := make([]flags, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].returnFlag != keys[j].returnFlag {
			return keys[i].returnFlag < keys[j].returnFlag
		}
		return keys[i].lineStatus < keys[j].lineStatus
	})
	return keys
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tpch-q1:", err)
	os.Exit(1)
}
