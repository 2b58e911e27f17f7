# memory.gp: written by `attnbench report`; run with `gnuplot memory.gp` in this folder
set title "Peak memory (RSS) against sequence length" noenhanced
set xlabel "sequence length n (tokens)" noenhanced
set ylabel "peak RSS" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set logscale y 2
set format x '2^{%L}'
set format y '%.0b %BB'
set yrange [5903701.333333333:6598686670848]
x0 = 1024; y0 = 18395136
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'memory.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'memory.svg' }
  plot 'memory.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "full" noenhanced, \
       'memory.dat' index 1 using 1:2 with points pt 6 ps 1.5 lw 2 lt 1 title "full: model bytes, not run" noenhanced, \
       'memory.dat' index 2 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "full_stream" noenhanced, \
       'memory.dat' index 3 using 1:2 with points pt 6 ps 1.5 lw 2 lt 2 title "full_stream: model bytes, not run" noenhanced, \
       'memory.dat' index 4 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "block_sparse" noenhanced, \
       'memory.dat' index 5 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "etc" noenhanced, \
       'memory.dat' index 6 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 5 title "lsh" noenhanced, \
       'memory.dat' index 7 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 6 title "reversible (lsh) L=2" noenhanced, \
       y0 * (x / x0) ls 1 title '∝ n', y0 * (x / x0)**2 ls 2 title '∝ n^2'
  set output
}
