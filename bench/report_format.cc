#include "bench/report_format.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace tailor::bench {

std::string LinePanelsSvg(const std::vector<int>& ks, const std::vector<PlotSeries>& series,
                          const std::vector<PlotPanel>& panels) {
  const int panel_w = 420, h = 320, left = 55, top = 30, plot_w = 340, plot_h = 240;
  std::string svg = absl::StrFormat(
      R"(<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">)"
      "\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      static_cast<int>(panels.size()) * panel_w, h + 60);
  const int n = static_cast<int>(ks.size());
  for (size_t p = 0; p < panels.size(); ++p) {
    const PlotPanel& panel = panels[p];
    double lo = INFINITY, hi = -INFINITY;
    if (panel.range) {
      std::tie(lo, hi) = *panel.range;
    } else {
      for (const std::vector<double>& line : panel.values) {
        for (double v : line) {
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
      }
      if (!(hi > lo)) hi = lo + 0.01;
      const double pad = 0.1 * (hi - lo);
      lo -= pad;
      hi += pad;
    }
    const int x0 = static_cast<int>(p) * panel_w + left;
    auto x = [&](int i) { return x0 + (n <= 1 ? 0 : plot_w * i / (n - 1)); };
    auto y = [&](double v) { return top + plot_h - (v - lo) / (hi - lo) * plot_h; };
    absl::StrAppendFormat(&svg,
                          R"(<text x="%d" y="18" font-size="13">%s</text>)"
                          "\n",
                          x0, panel.title);
    absl::StrAppendFormat(
        &svg,
        R"(<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>)"
        "\n",
        x0, top, plot_w, plot_h);
    for (int g = 0; g <= 4; ++g) {
      const double v = lo + (hi - lo) * g / 4;
      absl::StrAppendFormat(&svg,
                            R"(<text x="%d" y="%.0f" text-anchor="end">%.*f</text>)"
                            "\n",
                            x0 - 4, y(v) + 4, panel.decimals, v);
    }
    for (int i = 0; i < n; ++i) {
      absl::StrAppendFormat(&svg,
                            R"(<text x="%d" y="%d" text-anchor="middle">%d</text>)"
                            "\n",
                            x(i), top + plot_h + 14, ks[static_cast<size_t>(i)]);
    }
    absl::StrAppendFormat(
        &svg,
        R"(<text x="%d" y="%d" text-anchor="middle">pairs from the user (k)</text>)"
        "\n",
        x0 + plot_w / 2, top + plot_h + 30);
    for (size_t s = 0; s < series.size() && s < panel.values.size(); ++s) {
      std::string points;
      for (int i = 0; i < n && i < static_cast<int>(panel.values[s].size()); ++i) {
        absl::StrAppendFormat(&points, "%d,%.1f ", x(i),
                              y(panel.values[s][static_cast<size_t>(i)]));
      }
      absl::StrAppendFormat(&svg,
                            R"(<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>)"
                            "\n",
                            series[s].color, points);
    }
  }
  for (size_t i = 0; i < series.size(); ++i) {
    const int lx = left + static_cast<int>(i) * 190;
    absl::StrAppendFormat(&svg,
                          R"(<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>)"
                          R"(<text x="%d" y="%d">%s</text>)"
                          "\n",
                          lx, h + 40, lx + 20, h + 40, series[i].color, lx + 25, h + 44,
                          series[i].name);
  }
  return svg + "</svg>\n";
}

std::string DescribeKnowledge(const v1::Knowledge& k) {
  std::string out = absl::StrFormat(
      "calibration users %d, prior scale %.3g, neighbour temperature %.3g, own log prior odds "
      "%.2g; weights (population / own / blend) by pairs, with the live safety net's shares of "
      "fitted / population / own:",
      k.calibration_users(), k.prior_scale(), k.neighbour_temperature(),
      k.own_model_log_prior_odds());
  for (const v1::ExperienceWeights& w : k.experience()) {
    absl::StrAppendFormat(&out, " %d+: %.2f / %.2f / %.2f (live %.2f / %.2f / %.2f);",
                          w.min_pairs(), w.population(), w.own(), w.blend(), w.live_fitted_share(),
                          w.live_population_share(), w.live_own_share());
  }
  return out;
}

}  // namespace tailor::bench
