# counter_0.gp: written by `attnbench report`; run with `gnuplot counter_0.gp` in this folder
set title "rusage.cpu_s per token and repetition"
set xlabel "sequence length n (tokens)"
set ylabel "rusage.cpu_s"
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set logscale y 10
set format y '%g'
set format x '2^{%L}'
set yrange [5.3922526041666663e-07:9.5573120117187502e-06]
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'counter_0.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'counter_0.svg' }
  plot 'counter_0.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "lsh" noenhanced, \
       'counter_0.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "lsh n_hashes=2" noenhanced, \
       'counter_0.dat' index 2 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "lsh n_hashes=4" noenhanced, \
       'counter_0.dat' index 3 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "lsh n_hashes=8" noenhanced, \
       'counter_0.dat' index 4 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 5 title "block_sparse" noenhanced, \
       'counter_0.dat' index 5 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 6 title "block_sparse n_rand=1" noenhanced, \
       'counter_0.dat' index 6 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 7 title "block_sparse n_rand=3" noenhanced, \
       'counter_0.dat' index 7 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 8 title "block_sparse n_rand=8" noenhanced, \
       'counter_0.dat' index 8 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 9 title "etc" noenhanced, \
       'counter_0.dat' index 9 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 10 title "etc radius=32" noenhanced, \
       'counter_0.dat' index 10 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 11 title "etc radius=84" noenhanced, \
       'counter_0.dat' index 11 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 12 title "etc radius=256" noenhanced
  set output
}
