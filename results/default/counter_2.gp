# counter_2.gp: written by `attnbench report`; run with `gnuplot counter_2.gp` in this folder
set title "perf::MINOR-FAULTS per token and repetition" noenhanced
set xlabel "sequence length n (tokens)" noenhanced
set ylabel "perf::MINOR-FAULTS" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set logscale y 10
set format y '%g'
set format x '2^{%L}'
set yrange [6.3578287760416663e-07:0.30322265625]
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'counter_2.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'counter_2.svg' }
  plot 'counter_2.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "full" noenhanced, \
       'counter_2.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "full_stream" noenhanced, \
       'counter_2.dat' index 2 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "block_sparse" noenhanced, \
       'counter_2.dat' index 3 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "etc" noenhanced, \
       'counter_2.dat' index 4 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 5 title "lsh" noenhanced, \
       'counter_2.dat' index 5 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 6 title "reversible (lsh) L=2" noenhanced
  set output
}
