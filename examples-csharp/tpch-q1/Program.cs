// TPC-H Q1 (pricing summary report) on babelmr, in C# (Mono, base class library only) with
// babelmr's helper (base-image/lib/csharp/Babelmr.cs).
//
//   map:    a share of lineitem (in.csv) -> per (l_returnflag, l_linestatus), the sums and the row count
//           of the items shipped by 1998-09-02, added up exactly as decimals;
//   reduce: all partial sums of its groups (in.csv) -> Q1's totals and averages, sorted by the flags.
//
// The mode is the last argument.

using System;
using System.Collections.Generic;
using System.Globalization;

static class Q1
{
    const string ShippedBy = "1998-09-02";  // 1998-12-01 - 90 days; ISO dates compare like strings

    static readonly string[] PartialColumns =
        { "l_returnflag", "l_linestatus", "sum_qty", "sum_base_price", "sum_disc_price", "sum_charge", "sum_disc",
          "count_order" };

    static readonly string[] Q1Columns =
        { "l_returnflag", "l_linestatus", "sum_qty", "sum_base_price", "sum_disc_price", "sum_charge", "avg_qty",
          "avg_price", "avg_disc", "count_order" };

    /// <summary>The sums of one (l_returnflag, l_linestatus) group.</summary>
    sealed class Group
    {
        public string ReturnFlag, LineStatus;
        public decimal Qty, BasePrice, DiscPrice, Charge, Disc;  // map: exact sums of the decimal columns
        public double QtyD, BasePriceD, DiscPriceD, ChargeD, DiscD;  // reduce: sums of the partial sums
        public long Count;
    }

    static Group GroupOf(Dictionary<string, Group> groups, string returnFlag, string lineStatus)
    {
        string key = returnFlag + "\u0000" + lineStatus;
        Group g;
        if (!groups.TryGetValue(key, out g))
        {
            g = new Group { ReturnFlag = returnFlag, LineStatus = lineStatus };
            groups.Add(key, g);
        }
        return g;
    }

    static List<Group> Sorted(Dictionary<string, Group> groups)
    {
        var list = new List<Group>(groups.Values);
        list.Sort((a, b) =>
        {
            int c = string.CompareOrdinal(a.ReturnFlag, b.ReturnFlag);
            return c != 0 ? c : string.CompareOrdinal(a.LineStatus, b.LineStatus);
        });
        return list;
    }

    static decimal Decimal(string text) { return decimal.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture); }
    static double Double(string text) { return double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture); }
    static long Long(string text) { return long.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture); }

    static void MapLineitem()
    {
        var groups = new Dictionary<string, Group>(StringComparer.Ordinal);
        using (var csv = new CsvReader())
        {
            int flag = csv.Column("l_returnflag"), status = csv.Column("l_linestatus"),
                quantity = csv.Column("l_quantity"), price = csv.Column("l_extendedprice"),
                discount = csv.Column("l_discount"), tax = csv.Column("l_tax"), shipdate = csv.Column("l_shipdate");
            var row = new List<string>();
            while (csv.Read(row))
            {
                if (string.CompareOrdinal(row[shipdate], ShippedBy) > 0) continue;
                Group g = GroupOf(groups, row[flag], row[status]);
                decimal p = Decimal(row[price]), d = Decimal(row[discount]);
                decimal discPrice = p * (1 - d);
                g.Qty += Decimal(row[quantity]);
                g.BasePrice += p;
                g.DiscPrice += discPrice;
                g.Charge += discPrice * (1 + Decimal(row[tax]));
                g.Disc += d;
                g.Count++;
            }
        }
        using (var csv = new CsvWriter(Babelmr.Output, PartialColumns))
            foreach (Group g in Sorted(groups))
                csv.Field(g.ReturnFlag).Field(g.LineStatus).Field((double)g.Qty).Field((double)g.BasePrice)
                   .Field((double)g.DiscPrice).Field((double)g.Charge).Field((double)g.Disc).Field(g.Count).EndRow();
    }

    static void ReducePartials()
    {
        var groups = new Dictionary<string, Group>(StringComparer.Ordinal);
        using (var csv = new CsvReader())
        {
            int[] c = Array.ConvertAll(PartialColumns, csv.Column);
            var row = new List<string>();
            while (csv.Read(row))
            {
                Group g = GroupOf(groups, row[c[0]], row[c[1]]);
                g.QtyD += Double(row[c[2]]);
                g.BasePriceD += Double(row[c[3]]);
                g.DiscPriceD += Double(row[c[4]]);
                g.ChargeD += Double(row[c[5]]);
                g.DiscD += Double(row[c[6]]);
                g.Count += Long(row[c[7]]);
            }
        }
        using (var csv = new CsvWriter(Babelmr.Output, Q1Columns))
            foreach (Group g in Sorted(groups))
                csv.Field(g.ReturnFlag).Field(g.LineStatus).Field(g.QtyD).Field(g.BasePriceD).Field(g.DiscPriceD)
                   .Field(g.ChargeD).Field(g.QtyD / g.Count).Field(g.BasePriceD / g.Count).Field(g.DiscD / g.Count)
                   .Field(g.Count).EndRow();
    }

    static int Main(string[] args)
    {
        return Babelmr.Run(args, new Dictionary<string, Action> { { "map", MapLineitem }, { "reduce", ReducePartials } });
    }
}
