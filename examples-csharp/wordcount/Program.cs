// Word count on babelmr, in C# (Mono, base class library only).
//
//   map:    in.csv (column `line`) -> out.csv `word,count`: how often each word occurs in this share
//   reduce: in.csv `word,count` (every partial count of this task's words) -> out.csv: the totals
//
// A word is a run of the letters a-z after lower-casing. The mode is the last argument.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;
using System.Text.RegularExpressions;

static class WordCount
{
    static string Input { get { return Environment.GetEnvironmentVariable("MR_INPUT") ?? "in.csv"; } }
    static string Output { get { return Environment.GetEnvironmentVariable("MR_OUTPUT") ?? "out.csv"; } }

    static void Add(Dictionary<string, long> counts, string word, long n)
    {
        long total;
        counts.TryGetValue(word, out total);
        counts[word] = total + n;
    }

    static Dictionary<string, long> MapLines()
    {
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var word = new StringBuilder();
        using (var csv = new CsvReader(Input))
        {
            int line = csv.Column("line");
            var row = new List<string>();
            while (csv.Read(row))
            {
                foreach (char ch in row[line])
                {
                    char c = char.ToLowerInvariant(ch);
                    if (c >= 'a' && c <= 'z')
                    {
                        word.Append(c);
                    }
                    else if (word.Length > 0)
                    {
                        Add(counts, word.ToString(), 1);
                        word.Length = 0;
                    }
                }
                if (word.Length > 0)
                {
                    Add(counts, word.ToString(), 1);
                    word.Length = 0;
                }
            }
        }
        return counts;
    }

    static Dictionary<string, long> ReduceCounts()
    {
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        using (var csv = new CsvReader(Input))
        {
            int word = csv.Column("word"), count = csv.Column("count");
            var row = new List<string>();
            while (csv.Read(row))
                Add(counts, row[word], long.Parse(row[count], NumberStyles.Integer, CultureInfo.InvariantCulture));
        }
        return counts;
    }

    static int Main(string[] args)
    {
        string mode = args.Length > 0 ? args[args.Length - 1] : "";
        if (mode != "map" && mode != "reduce")
        {
            Console.Error.WriteLine("usage: wordcount.exe map|reduce");
            return 2;
        }
        Action run = () => Run(mode);
        if (Environment.GetEnvironmentVariable("MR_WARM") != null) Warm.Serve(run);  // started once per worker
        else run();
        return 0;
    }

    static void Run(string mode)
    {
        Dictionary<string, long> counts = mode == "map" ? MapLines() : ReduceCounts();
        var words = new List<string>(counts.Keys);
        words.Sort(StringComparer.Ordinal);
        using (var csv = new CsvWriter(Output, "word", "count"))
            foreach (string w in words)
                csv.Field(w).Field(counts[w]).EndRow();
    }
}

/// <summary>Warm mode (MR_WARM set): runs the task once per line read from fd $MR_WARM_IN (a JSON object of the
/// task's MR_* variables, all strings) and answers each on fd $MR_WARM_OUT.</summary>
static class Warm
{
    public static void Serve(Action run)
    {
        var tasks = new StreamReader(new FileStream("/dev/fd/" + Environment.GetEnvironmentVariable("MR_WARM_IN"), FileMode.Open, FileAccess.Read));
        var replies = new StreamWriter(new FileStream("/dev/fd/" + Environment.GetEnvironmentVariable("MR_WARM_OUT"), FileMode.Open, FileAccess.Write));
        string line;
        while ((line = tasks.ReadLine()) != null)
        {
            foreach (Match m in Regex.Matches(line, "\"(MR_\\w+)\":\"((?:[^\"\\\\]|\\\\.)*)\""))
                Environment.SetEnvironmentVariable(m.Groups[1].Value, Regex.Unescape(m.Groups[2].Value));
            string error = null;
            try { Directory.SetCurrentDirectory(Environment.GetEnvironmentVariable("MR_WORKDIR")); run(); }
            catch (Exception e) { error = e.GetType().Name + ": " + e.Message; }
            Console.Out.Flush(); Console.Error.Flush();
            replies.WriteLine(error == null ? "{\"ok\": true}" : "{\"error\": \"" + Regex.Replace(error, "[\"\\\\\\p{Cc}]", " ") + "\"}");
            replies.Flush();
        }
    }
}

/// <summary>Reads RFC 4180 CSV with a header row: comma separated, fields quoted with " where needed, "" for
/// a quote inside a quoted field, line breaks inside quoted fields, records ending in \n or \r\n. An empty
/// field (babelmr's null) reads as "".</summary>
sealed class CsvReader : IDisposable
{
    readonly TextReader input;
    readonly char[] buffer = new char[1 << 16];
    readonly StringBuilder field = new StringBuilder();
    int pos, end;

    public readonly string[] Header;

    public CsvReader(string path)
    {
        input = new StreamReader(path, new UTF8Encoding(false), true, 1 << 16);
        var header = new List<string>();
        Header = Read(header) ? header.ToArray() : new string[0];
    }

    /// <summary>The index of a header column.</summary>
    public int Column(string name)
    {
        int i = Array.IndexOf(Header, name);
        if (i < 0 && Header.Length > 0)
            throw new FormatException("CSV input has no column '" + name + "'; it has " + string.Join(",", Header));
        return i;
    }

    bool Fill()
    {
        if (pos < end) return true;
        pos = 0;
        end = input.Read(buffer, 0, buffer.Length);
        return end > 0;
    }

    /// <summary>The next record's fields; false at the end of the input.</summary>
    public bool Read(List<string> fields)
    {
        fields.Clear();
        if (!Fill()) return false;
        while (true)
        {
            int stop = -1;
            if (!Fill()) fields.Add("");  // the input ends with an empty field after a comma
            else stop = buffer[pos] == '"' ? Quoted(fields) : Plain(fields);
            if (stop == ',') continue;
            if (stop == '\r' && Fill() && buffer[pos] == '\n') pos++;
            return true;
        }
    }

    // An unquoted field; returns the character that ended it (consumed), or -1 at the end of the input.
    int Plain(List<string> fields)
    {
        field.Length = 0;
        int start = pos;
        while (true)
        {
            if (pos == end)
            {
                field.Append(buffer, start, pos - start);
                if (!Fill())
                {
                    fields.Add(field.ToString());
                    return -1;
                }
                start = pos;
            }
            char c = buffer[pos];
            if (c == ',' || c == '\n' || c == '\r')
            {
                fields.Add(field.Length == 0 ? new string(buffer, start, pos - start)
                                             : field.Append(buffer, start, pos - start).ToString());
                pos++;
                return c;
            }
            pos++;
        }
    }

    // A quoted field, from its opening quote; returns what Plain returns.
    int Quoted(List<string> fields)
    {
        field.Length = 0;
        pos++;
        while (true)
        {
            if (!Fill()) throw new FormatException("CSV input ends inside a quoted field");
            int start = pos;
            while (pos < end && buffer[pos] != '"') pos++;
            field.Append(buffer, start, pos - start);
            if (pos == end) continue;
            pos++;
            if (Fill() && buffer[pos] == '"')
            {
                field.Append('"');
                pos++;
                continue;
            }
            fields.Add(field.ToString());
            if (!Fill()) return -1;
            char c = buffer[pos++];
            if (c == ',' || c == '\n' || c == '\r') return c;
            throw new FormatException("CSV input has '" + c + "' after the closing quote of a field");
        }
    }

    public void Dispose() { input.Dispose(); }
}

/// <summary>Writes CSV with a header row, quoting only fields that need it; numbers in the invariant
/// culture, doubles so that they read back as the same double.</summary>
sealed class CsvWriter : IDisposable
{
    static readonly char[] Special = { ',', '"', '\n', '\r' };
    readonly TextWriter output;
    bool first = true;

    public CsvWriter(string path, params string[] header)
    {
        output = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 16);
        foreach (string name in header) Field(name);
        EndRow();
    }

    public CsvWriter Field(string value)
    {
        if (!first) output.Write(',');
        first = false;
        if (value == null) return this;
        if (value.IndexOfAny(Special) < 0)
        {
            output.Write(value);
        }
        else
        {
            output.Write('"');
            output.Write(value.Replace("\"", "\"\""));
            output.Write('"');
        }
        return this;
    }

    public CsvWriter Field(long value) { return Field(value.ToString(CultureInfo.InvariantCulture)); }

    public CsvWriter Field(double value)
    {
        // Mono's "R" misses the round trip for a few doubles: G17 always has enough digits.
        string text = value.ToString("R", CultureInfo.InvariantCulture);
        if (double.Parse(text, CultureInfo.InvariantCulture) != value)
            text = value.ToString("G17", CultureInfo.InvariantCulture);
        return Field(text);
    }

    public void EndRow()
    {
        output.Write('\n');
        first = true;
    }

    public void Dispose() { output.Dispose(); }
}
