// Package babelmr is the program side of babelmr's contract (docs/program-contract.md) for Go, standard
// library only: Run picks the step of the stage's mode and runs it once (cold) or once per task (warm);
// Input and Output name the task's files; ReadCSV, CSVWriter, ReadJSONL and JSONLWriter read and write
// them; Counter and Status report to the engine.
//
// A program is its steps and one call:
//
//	func main() { babelmr.Run(babelmr.Steps{"map": mapLines, "reduce": reduceCounts}) }
//
// The base image ships this package at /opt/babelmr/lib/go (repository: base-image/lib/go); a program's go.mod
// says `require babelmr v0.0.0` and `replace babelmr => /opt/babelmr/lib/go` (or the checkout's base-image/lib/go).
package babelmr

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Steps maps each mode the program handles (a stage's "mode", appended as the last argument) to its step.
type Steps map[string]func() error

// Run runs the step named by the last argument: once, or in warm mode (MR_WARM set) once per task read
// from fd $MR_WARM_IN. A failed step exits 1 (cold) or fails its task (warm) with the error on stderr.
func Run(steps Steps) {
	prog := filepath.Base(os.Args[0])
	modes := make([]string, 0, len(steps))
	for m := range steps {
		modes = append(modes, m)
	}
	sort.Strings(modes)
	if len(os.Args) < 2 || steps[os.Args[len(os.Args)-1]] == nil {
		fmt.Fprintf(os.Stderr, "usage: %s %s\n", prog, strings.Join(modes, "|"))
		os.Exit(2)
	}
	mode := os.Args[len(os.Args)-1]
	step := func(mode string) error {
		if steps[mode] == nil {
			return fmt.Errorf("no step %q: this program has %s", mode, strings.Join(modes, ", "))
		}
		if err := steps[mode](); err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		return nil
	}
	if os.Getenv("MR_WARM") != "" {
		serve(step, mode, modes)
		return
	}
	if err := step(mode); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(1)
	}
}

// serve is the warm protocol: one JSON line of the task's MR_* variables per task on fd $MR_WARM_IN, one
// answer line ({"ok": true} or {"error": "..."}) per task on fd $MR_WARM_OUT; end of file: no more tasks.
// Each task runs the step of its own MR_MODE (the argument's mode when it has none), and each answer lists
// the modes the program serves, so the engine may hand it the tasks of the run's other stages too.
func serve(step func(string) error, mode string, modes []string) {
	in, _ := strconv.Atoi(os.Getenv("MR_WARM_IN"))
	out, _ := strconv.Atoi(os.Getenv("MR_WARM_OUT"))
	tasks, replies := bufio.NewScanner(os.NewFile(uintptr(in), "tasks")), os.NewFile(uintptr(out), "replies")
	tasks.Buffer(make([]byte, 1<<16), 1<<26)
	previous := map[string]string{}
	for tasks.Scan() {
		var task map[string]string
		err := json.Unmarshal(tasks.Bytes(), &task)
		for k := range previous {
			if _, ok := task[k]; !ok {
				os.Unsetenv(k) // the last task's MR_INPUT must not leak into a task without one
			}
		}
		for k, v := range task {
			os.Setenv(k, v)
		}
		previous = task
		if err == nil {
			if err = os.Chdir(task["MR_WORKDIR"]); err == nil {
				taskMode := task["MR_MODE"]
				if taskMode == "" {
					taskMode = mode
				}
				err = step(taskMode)
			}
		}
		reply := map[string]any{"ok": true, "modes": modes}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
			reply = map[string]any{"error": err.Error(), "modes": modes}
		}
		line, _ := json.Marshal(reply)
		replies.Write(append(line, '\n'))
	}
}

// Format is the stage's program format: "csv", "jsonl" or "parquet" (MR_FORMAT).
func Format() string {
	if f := os.Getenv("MR_FORMAT"); f != "" {
		return f
	}
	return "csv"
}

// Input is the path of the stage's only input (MR_INPUT).
func Input() string {
	if path := os.Getenv("MR_INPUT"); path != "" {
		return path
	}
	return "in." + Format()
}

// NamedInput is the path of the input `name` of a stage with several inputs (MR_INPUTS).
func NamedInput(name string) string {
	var inputs map[string]string
	if err := json.Unmarshal([]byte(os.Getenv("MR_INPUTS")), &inputs); err == nil && inputs[name] != "" {
		return inputs[name]
	}
	return "in_" + name + "." + Format()
}

// Output is the path to write the task's output to (MR_OUTPUT).
func Output() string {
	if path := os.Getenv("MR_OUTPUT"); path != "" {
		return path
	}
	return "out." + Format()
}

// Counter adds amount to the task's counter group/name (a Hadoop Streaming reporter line on stderr).
func Counter(group, name string, amount int64) {
	fmt.Fprintf(os.Stderr, "reporter:counter:%s,%s,%d\n", group, name, amount)
}

// Status sets the task's status line, shown while it runs.
func Status(message string) {
	fmt.Fprintf(os.Stderr, "reporter:status:%s\n", strings.ReplaceAll(message, "\n", " "))
}

// ReadCSV calls row with the values of the named columns, in that order, of every row of the CSV file at
// path (babelmr's: a header row, then RFC 4180 records). A file without a header has no rows. The slice
// is reused and its strings share memory with the row: copy (strings.Clone) what you keep. NULL and the
// empty string both read as "" (encoding/csv cannot tell them apart; use JSON Lines where that matters).
func ReadCSV(path string, columns []string, row func(values []string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	r.ReuseRecord = true
	header, err := r.Read()
	if err == io.EOF {
		return nil
	} else if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	pos := make([]int, len(columns))
	for i, name := range columns {
		pos[i] = -1
		for j, h := range header {
			if h == name {
				pos[i] = j
			}
		}
		if pos[i] < 0 {
			return fmt.Errorf("%s has no column %q (columns: %s)", path, name, strings.Join(header, ", "))
		}
	}
	values := make([]string, len(columns))
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for i, p := range pos {
			values[i] = rec[p]
		}
		if err := row(values); err != nil {
			line, _ := r.FieldPos(0)
			return fmt.Errorf("%s line %d: %w", path, line, err)
		}
	}
}

// CSVWriter writes a CSV file with a header row that babelmr reads back exactly: nil is NULL (an empty
// field), "" the empty string (""), floats with the fewest digits that read back as the same float64.
type CSVWriter struct{ output }

// output is an output file behind a buffer, keeping the first error.
type output struct {
	f      *os.File
	w      *bufio.Writer
	err    error
	closed bool
}

func create(path string) (output, error) {
	f, err := os.Create(path)
	if err != nil {
		return output{}, err
	}
	return output{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

// keep records err if it is the first error, and returns the first error.
func (o *output) keep(err error) error {
	if err != nil && o.err == nil {
		o.err = err
	}
	return o.err
}

// Close flushes and closes the file; it returns the first error of any write. A second Close does nothing.
func (o *output) Close() error {
	if o.closed {
		return o.err
	}
	o.closed = true
	o.keep(o.w.Flush())
	return o.keep(o.f.Close())
}

// CreateCSV creates the CSV file at path (usually Output()) and writes its header row.
func CreateCSV(path string, header ...string) (*CSVWriter, error) {
	out, err := create(path)
	if err != nil {
		return nil, err
	}
	w := &CSVWriter{out}
	values := make([]any, len(header))
	for i, h := range header {
		values[i] = h
	}
	return w, w.Write(values...)
}

// Write writes one row: strings, integers, floats, bools, NullInt, nil (NULL), or anything fmt.Sprint formats.
func (w *CSVWriter) Write(values ...any) error {
	for i, v := range values {
		if i > 0 {
			w.w.WriteByte(',')
		}
		switch v := v.(type) {
		case nil:
		case string:
			w.text(v)
		case float64:
			w.w.WriteString(FormatFloat(v))
		case float32:
			w.w.WriteString(FormatFloat(float64(v)))
		case int64:
			w.w.WriteString(strconv.FormatInt(v, 10))
		case int:
			w.w.WriteString(strconv.Itoa(v))
		case bool:
			w.w.WriteString(strconv.FormatBool(v))
		case NullInt:
			if v.Valid {
				w.w.WriteString(strconv.FormatInt(v.Int64, 10))
			}
		default:
			w.text(fmt.Sprint(v))
		}
	}
	_, err := w.w.WriteString("\n")
	return w.keep(err)
}

// text writes a string field, quoted when it is empty (else it would read as NULL) or holds , " or a line break.
func (w *CSVWriter) text(v string) {
	if v == "" || strings.ContainsAny(v, ",\"\r\n") {
		w.w.WriteString(`"` + strings.ReplaceAll(v, `"`, `""`) + `"`)
	} else {
		w.w.WriteString(v)
	}
}

// FormatFloat formats a float64 with the fewest digits that read back as the same value; NaN and the
// infinities as babelmr's CSV reader reads them (nan, inf, -inf).
func FormatFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "nan"
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// ReadJSONL decodes every line of the JSON Lines file at path into a new T and calls row with it.
func ReadJSONL[T any](path string, row func(*T) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	for n := 1; ; n++ {
		var r T
		if err := dec.Decode(&r); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s row %d: %w", path, n, err)
		}
		if err := row(&r); err != nil {
			return fmt.Errorf("%s row %d: %w", path, n, err)
		}
	}
}

// JSONLWriter writes one JSON object per line (encoding/json; a nil pointer or a null field is NULL).
type JSONLWriter struct {
	output
	enc *json.Encoder
}

// CreateJSONL creates the JSON Lines file at path (usually Output()); no rows make an empty file.
func CreateJSONL(path string) (*JSONLWriter, error) {
	out, err := create(path)
	if err != nil {
		return nil, err
	}
	return &JSONLWriter{out, json.NewEncoder(out.w)}, nil
}

// Write writes one row.
func (w *JSONLWriter) Write(row any) error {
	return w.keep(w.enc.Encode(row))
}

// NullInt is a JSON integer or null (Valid false), like database/sql's NullInt64. It also takes an
// integral number written as a float (47.0), as a program's JSON may hold for an integer column with
// NULLs; such a number beyond 2^53 may have lost precision already, so it is refused.
type NullInt struct {
	Int64 int64
	Valid bool
}

// UnmarshalJSON reads null, an integer or an integral float.
func (n *NullInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		*n = NullInt{}
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return fmt.Errorf("not an integer: %s", s)
		}
		v = int64(f)
	}
	*n = NullInt{v, true}
	return nil
}

// MarshalJSON writes the integer, or null.
func (n NullInt) MarshalJSON() ([]byte, error) {
	if !n.Valid {
		return []byte("null"), nil
	}
	return []byte(strconv.FormatInt(n.Int64, 10)), nil
}
