// Word count on babelmr, in Go with the standard library only.
//
//	map:    reads lines of text (CSV column "line") and writes how often each word occurs in them;
//	reduce: gets every partial count of its words and writes the totals.
//
// Both modes read and write CSV: babelmr writes the task's input to in.csv (MR_INPUT) and reads
// out.csv (MR_OUTPUT) back. A word is a run of the letters a-z after lower-casing.
package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() {
	steps := map[string]func(*csv.Reader) (map[string]int64, error){"map": mapLines, "reduce": reduceCounts}
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

// run does one task: counts the input's words in the mode's way.
func run(mode string) error {
	steps := map[string]func(*csv.Reader) (map[string]int64, error){"map": mapLines, "reduce": reduceCounts}
	in, err := os.Open(env("MR_INPUT", "in.csv"))
	if err != nil {
		return err
	}
	defer in.Close()
	r := csv.NewReader(bufio.NewReaderSize(in, 1<<20))
	r.ReuseRecord = true
	counts, err := steps[mode](r)
	if err != nil {
		return fmt.Errorf("%s: %w", mode, err)
	}
	if err := writeCounts(env("MR_OUTPUT", "out.csv"), counts); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "reporter:counter:wordcount,distinct_words,%d\n", len(counts))
	return nil
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

// mapLines counts the words of the column "line".
func mapLines(r *csv.Reader) (map[string]int64, error) {
	counts := map[string]int64{}
	col, err := columns(r, "line")
	if err != nil || col == nil {
		return counts, err
	}
	var words int64
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		line := strings.ToLower(rec[col[0]]) // Unicode-aware, as DuckDB's lower(): 'K' (Kelvin) is 'k'
		for i := 0; i < len(line); {
			if !isLetter(line[i]) {
				i++
				continue
			}
			j := i + 1
			for j < len(line) && isLetter(line[j]) {
				j++
			}
			if word := line[i:j]; counts[word] > 0 {
				counts[word]++
			} else {
				counts[strings.Clone(word)] = 1 // a copy: the key must not keep the whole line alive
			}
			words++
			i = j
		}
	}
	fmt.Fprintf(os.Stderr, "reporter:counter:wordcount,words,%d\n", words)
	return counts, nil
}

// reduceCounts adds up the column "count" per "word".
func reduceCounts(r *csv.Reader) (map[string]int64, error) {
	counts := map[string]int64{}
	col, err := columns(r, "word", "count")
	if err != nil || col == nil {
		return counts, err
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(rec[col[1]], 10, 64)
		if err != nil {
			line, _ := r.FieldPos(col[1])
			return nil, fmt.Errorf("line %d: count %q: %w", line, rec[col[1]], err)
		}
		counts[rec[col[0]]] += n
	}
	return counts, nil
}

// columns reads the header row and returns the positions of the named columns. An empty file (no
// header) is an input without rows: then it returns no positions and no error.
func columns(r *csv.Reader, names ...string) ([]int, error) {
	header, err := r.Read()
	if err == io.EOF {
		return nil, nil
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

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' }

// writeCounts writes word,count rows sorted by word (a header row even when there are none).
func writeCounts(path string, counts map[string]int64) error {
	words := make([]string, 0, len(counts))
	for w := range counts {
		words = append(words, w)
	}
	sort.Strings(words)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := bufio.NewWriterSize(f, 1<<20)
	w := csv.NewWriter(buf)
	w.Write([]string{"word", "count"})
	for _, word := range words {
		w.Write([]string{word, strconv.FormatInt(counts[word], 10)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	if err := buf.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wordcount:", err)
	os.Exit(1)
}
