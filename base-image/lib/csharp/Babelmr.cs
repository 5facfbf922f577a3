// babelmr's helper for C# programs (docs/program-contract.md), base class library only (Mono or .NET):
// Babelmr.Run picks the step of the stage's mode and runs it once (cold) or once per task (warm);
// Babelmr.Input and Babelmr.Output name the task's files; CsvReader and CsvWriter read and write them;
// Babelmr.Counter and Babelmr.Status report to the engine. Compile it with the program:
//
//   mcs -optimize+ -out:prog.exe Program.cs /opt/babelmr/lib/csharp/Babelmr.cs   (repository: base-image/lib/csharp)
//
// and make Main one call:
//
//   static int Main(string[] args)
//   {
//       return Babelmr.Run(args, new Dictionary<string, Action> { { "map", Map }, { "reduce", Reduce } });
//   }

using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;
using System.Text.RegularExpressions;

public static class Babelmr
{
    // A "name": "string value" pair of a flat JSON object of strings (babelmr's task lines and MR_INPUTS).
    static readonly Regex JsonString = new Regex("\"((?:[^\"\\\\]|\\\\.)*)\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"");

    /// <summary>Runs the step named by the last argument (the stage's mode): once, or in warm mode (MR_WARM
    /// set) once per task read from fd $MR_WARM_IN. Returns Main's exit code: 0, 1 when the step failed
    /// (its exception on stderr), 2 for an unknown mode.</summary>
    public static int Run(string[] args, IDictionary<string, Action> steps)
    {
        string program = Path.GetFileName(Environment.GetCommandLineArgs()[0]);
        Action step;
        if (args.Length == 0 || !steps.TryGetValue(args[args.Length - 1], out step))
        {
            Console.Error.WriteLine("usage: " + program + " " + string.Join("|", new List<string>(steps.Keys)));
            return 2;
        }
        string mode = args[args.Length - 1];
        if (Environment.GetEnvironmentVariable("MR_WARM") != null)
        {
            Serve(steps, mode, program);
            return 0;
        }
        try
        {
            step();
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine(program + ": " + mode + ": " + e);
            return 1;
        }
    }

    /// <summary>The warm protocol: one JSON line of the task's MR_* variables (all strings) per task on fd
    /// $MR_WARM_IN, one answer line per task on fd $MR_WARM_OUT; end of file: no more tasks. Each task runs the
    /// step of its own MR_MODE (the argument's mode when it has none), and each answer lists the modes the
    /// program serves, so the engine may hand it the tasks of the run's other stages too.</summary>
    static void Serve(IDictionary<string, Action> steps, string mode, string program)
    {
        var names = new List<string>(steps.Keys);
        string modes = "\"modes\": [" + string.Join(", ", names.ConvertAll(
            n => "\"" + Regex.Replace(n, "[\"\\\\\\p{Cc}]", " ") + "\"")) + "]";
        var tasks = new StreamReader(new FileStream("/dev/fd/" + Environment.GetEnvironmentVariable("MR_WARM_IN"),
                                                    FileMode.Open, FileAccess.Read));
        var replies = new StreamWriter(new FileStream("/dev/fd/" + Environment.GetEnvironmentVariable("MR_WARM_OUT"),
                                                      FileMode.Open, FileAccess.Write));
        var previous = new Dictionary<string, string>();
        string line;
        while ((line = tasks.ReadLine()) != null)
        {
            Dictionary<string, string> task = Strings(line);
            foreach (string name in previous.Keys)
                if (!task.ContainsKey(name)) Environment.SetEnvironmentVariable(name, null);  // not the last task's
            foreach (KeyValuePair<string, string> v in task) Environment.SetEnvironmentVariable(v.Key, v.Value);
            previous = task;
            string error = null;
            string taskMode;
            if (!task.TryGetValue("MR_MODE", out taskMode) || taskMode == "") taskMode = mode;
            try
            {
                Action step;
                if (!steps.TryGetValue(taskMode, out step))
                    throw new ArgumentException("no step \"" + taskMode + "\": this program has "
                                                + string.Join(", ", names));
                Directory.SetCurrentDirectory(Environment.GetEnvironmentVariable("MR_WORKDIR"));
                step();
            }
            catch (Exception e)
            {
                Console.Error.WriteLine(program + ": " + taskMode + ": " + e);
                error = e.GetType().Name + ": " + e.Message;
            }
            Console.Out.Flush();
            Console.Error.Flush();
            replies.WriteLine(error == null ? "{\"ok\": true, " + modes + "}"
                              : "{\"error\": \"" + Regex.Replace(error, "[\"\\\\\\p{Cc}]", " ") + "\", " + modes + "}");
            replies.Flush();
        }
    }

    /// <summary>The string members of a flat JSON object (Python's json.dumps escapes: \" \\ \n \uXXXX ...).</summary>
    static Dictionary<string, string> Strings(string json)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (Match m in JsonString.Matches(json ?? ""))
            values[Regex.Unescape(m.Groups[1].Value)] = Regex.Unescape(m.Groups[2].Value);
        return values;
    }

    /// <summary>The stage's program format: csv, jsonl or parquet (MR_FORMAT).</summary>
    public static string Format { get { return Environment.GetEnvironmentVariable("MR_FORMAT") ?? "csv"; } }

    /// <summary>The path of the stage's only input (MR_INPUT), or of the input `name` of several (MR_INPUTS).</summary>
    public static string Input(string name = null)
    {
        string path;
        if (name == null) return Environment.GetEnvironmentVariable("MR_INPUT") ?? "in." + Format;
        return Strings(Environment.GetEnvironmentVariable("MR_INPUTS")).TryGetValue(name, out path)
            ? path : "in_" + name + "." + Format;
    }

    /// <summary>The path to write the task's output to (MR_OUTPUT).</summary>
    public static string Output { get { return Environment.GetEnvironmentVariable("MR_OUTPUT") ?? "out." + Format; } }

    /// <summary>Adds amount to the task's counter group/name (a Hadoop Streaming reporter line on stderr).</summary>
    public static void Counter(string group, string name, long amount)
    {
        Console.Error.WriteLine("reporter:counter:" + group + "," + name + "," + amount.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>Sets the task's status line, shown while it runs.</summary>
    public static void Status(string message)
    {
        Console.Error.WriteLine("reporter:status:" + message.Replace('\n', ' '));
        Console.Error.Flush();
    }
}

/// <summary>Reads RFC 4180 CSV with a header row, as babelmr writes it: comma separated, fields quoted with "
/// where needed, "" for a quote inside a quoted field, line breaks inside quoted fields, records ending in \n
/// or \r\n. An empty unquoted field is NULL and reads as null; a quoted "" is the empty string.</summary>
public sealed class CsvReader : IDisposable
{
    readonly TextReader input;
    readonly char[] buffer = new char[1 << 16];
    readonly StringBuilder field = new StringBuilder();
    int pos, end;

    public readonly string Path;
    public readonly string[] Header;

    /// <summary>Opens the CSV file at path (default: the stage's only input) and reads its header.</summary>
    public CsvReader(string path = null)
    {
        Path = path ?? Babelmr.Input();
        input = new StreamReader(Path, new UTF8Encoding(false), true, 1 << 16);
        var header = new List<string>();
        Header = Read(header) ? header.ToArray() : new string[0];
    }

    /// <summary>The index of a header column (-1 in a file without a header, which has no rows).</summary>
    public int Column(string name)
    {
        int i = Array.IndexOf(Header, name);
        if (i < 0 && Header.Length > 0)
            throw new FormatException(Path + " has no column '" + name + "'; it has " + string.Join(",", Header));
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
            if (!Fill()) fields.Add(null);  // the input ends with an empty field after a comma
            else stop = buffer[pos] == '"' ? Quoted(fields) : Plain(fields);
            if (stop == ',') continue;
            if (stop == '\r' && Fill() && buffer[pos] == '\n') pos++;
            return true;
        }
    }

    // An unquoted field (empty: null); returns the character that ended it (consumed), or -1 at the end.
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
                    fields.Add(field.Length == 0 ? null : field.ToString());
                    return -1;
                }
                start = pos;
            }
            char c = buffer[pos];
            if (c == ',' || c == '\n' || c == '\r')
            {
                if (field.Length == 0 && pos == start) fields.Add(null);
                else fields.Add(field.Length == 0 ? new string(buffer, start, pos - start)
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
            if (!Fill()) throw new FormatException(Path + ": the input ends inside a quoted field");
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
            throw new FormatException(Path + ": '" + c + "' after the closing quote of a field");
        }
    }

    public void Dispose() { input.Dispose(); }
}

/// <summary>Writes CSV with a header row that babelmr reads back exactly: null is NULL (an empty field), ""
/// the empty string (a quoted ""); numbers in the invariant culture, doubles so that they read back as the
/// same double, NaN and the infinities as nan, inf and -inf.</summary>
public sealed class CsvWriter : IDisposable
{
    static readonly char[] Special = { ',', '"', '\n', '\r' };
    readonly TextWriter output;
    bool first = true;

    /// <summary>Creates the CSV file at path (null: the task's output) and writes its header row.</summary>
    public CsvWriter(string path, params string[] header)
    {
        output = new StreamWriter(path ?? Babelmr.Output, false, new UTF8Encoding(false), 1 << 16);
        foreach (string name in header) Field(name);
        EndRow();
    }

    public CsvWriter Field(string value)
    {
        if (!first) output.Write(',');
        first = false;
        if (value == null) return this;
        if (value.Length > 0 && value.IndexOfAny(Special) < 0)
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
        if (double.IsNaN(value)) return Field("nan");
        if (double.IsInfinity(value)) return Field(value > 0 ? "inf" : "-inf");
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
