// What the benchmarks that report on live servers share in their output: the line charts of
// learning curves (SVG, one panel per measure, k on the x axis) and a one-line description of
// the knowledge a server fitted (GetServerInfo.knowledge).
#ifndef TAILOR_BENCH_REPORT_FORMAT_H_
#define TAILOR_BENCH_REPORT_FORMAT_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tailor/v1/tailor.pb.h"

namespace tailor::bench {

struct PlotSeries {
  std::string name;
  std::string color;  // an SVG colour, e.g. "#1f77b4"
};

struct PlotPanel {
  std::string title;
  // values[s][i]: series s at the i-th k.
  std::vector<std::vector<double>> values;
  // The y axis; without it, the values' range with 10% padding.
  std::optional<std::pair<double, double>> range;
  int decimals = 2;  // of the y-axis labels
};

// Side-by-side panels sharing the x axis `ks` and the legend `series`.
std::string LinePanelsSvg(const std::vector<int>& ks, const std::vector<PlotSeries>& series,
                          const std::vector<PlotPanel>& panels);

// "calibration users …, prior scale …; weights (population / own / blend) by pairs …".
std::string DescribeKnowledge(const v1::Knowledge& knowledge);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_REPORT_FORMAT_H_
