# time.gp: written by `attnbench report`; run with `gnuplot time.gp` in this folder
set title "Time per point against sequence length (one forward, forward + backward, or one training step)" noenhanced
set xlabel "sequence length n (tokens)" noenhanced
set ylabel "wall time (median)" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set logscale y 10
set format y '%.0s %cs'
set format x '2^{%L}'
set yrange [0.00027103066652974422:28.874871043500207]
x0 = 1024; y0 = 0.012533543999779795
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'time.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'time.svg' }
  plot 'time.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "full" noenhanced, \
       'time.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "full_stream" noenhanced, \
       'time.dat' index 2 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "block_sparse" noenhanced, \
       'time.dat' index 3 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "etc" noenhanced, \
       'time.dat' index 4 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 5 title "lsh" noenhanced, \
       'time.dat' index 5 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 6 title "reversible (lsh) L=2" noenhanced, \
       y0 * (x / x0) ls 1 title '∝ n', y0 * (x / x0)**2 ls 2 title '∝ n^2'
  set output
}
