# time.gp: written by `attnbench report`; run with `gnuplot time.gp` in this folder
set title "Time per training step against sequence length" noenhanced
set xlabel "sequence length n (tokens)" noenhanced
set ylabel "wall time (median)" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set logscale y 10
set format y '%.0s %cs'
set format x '2^{%L}'
set yrange [69.740790803334676:624.42413857200154]
x0 = 262144; y0 = 104.61118620500201
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'time.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'time.svg' }
  plot 'time.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "reversible (lsh) L=12" noenhanced, \
       y0 * (x / x0) ls 1 title '∝ n', y0 * (x / x0)**2 ls 2 title '∝ n^2'
  set output
}
