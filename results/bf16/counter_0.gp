# counter_0.gp: written by `attnbench report`; run with `gnuplot counter_0.gp` in this folder
set title "perf::TASK-CLOCK per token and repetition" noenhanced
set xlabel "sequence length n (tokens)" noenhanced
set ylabel "perf::TASK-CLOCK" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set logscale y 10
set format y '%g'
set format x '2^{%L}'
set yrange [589.9775390625:1638939.3943119049]
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'counter_0.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'counter_0.svg' }
  plot 'counter_0.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "full" noenhanced, \
       'counter_0.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "full heads=4 accuracy=0" noenhanced, \
       'counter_0.dat' index 2 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "full heads=4 accuracy=0" noenhanced, \
       'counter_0.dat' index 3 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "full_stream" noenhanced, \
       'counter_0.dat' index 4 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 5 title "full_stream heads=4 accuracy=0" noenhanced, \
       'counter_0.dat' index 5 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 6 title "full_stream heads=4 accuracy=0 backward=1" noenhanced, \
       'counter_0.dat' index 6 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 7 title "full_stream heads=4 accuracy=0 backward=1" noenhanced, \
       'counter_0.dat' index 7 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 8 title "full_stream heads=4 accuracy=0" noenhanced, \
       'counter_0.dat' index 8 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 9 title "block_sparse" noenhanced, \
       'counter_0.dat' index 9 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 10 title "block_sparse heads=4 accuracy=0" noenhanced, \
       'counter_0.dat' index 10 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 11 title "block_sparse heads=4 accuracy=0 backward=1" noenhanced, \
       'counter_0.dat' index 11 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 12 title "block_sparse heads=4 accuracy=0 backward=1" noenhanced, \
       'counter_0.dat' index 12 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 13 title "block_sparse heads=4 accuracy=0" noenhanced, \
       'counter_0.dat' index 13 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 14 title "etc" noenhanced, \
       'counter_0.dat' index 14 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 15 title "etc heads=4 accuracy=0" noenhanced, \
       'counter_0.dat' index 15 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 16 title "etc heads=4 accuracy=0 backward=1" noenhanced, \
       'counter_0.dat' index 16 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 17 title "etc heads=4 accuracy=0 backward=1" noenhanced, \
       'counter_0.dat' index 17 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 18 title "etc heads=4 accuracy=0" noenhanced, \
       'counter_0.dat' index 18 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 19 title "lsh" noenhanced, \
       'counter_0.dat' index 19 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 20 title "lsh heads=4 accuracy=0" noenhanced, \
       'counter_0.dat' index 20 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 21 title "lsh heads=4 accuracy=0 backward=1" noenhanced, \
       'counter_0.dat' index 21 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 22 title "lsh heads=4 accuracy=0 backward=1" noenhanced, \
       'counter_0.dat' index 22 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 23 title "lsh heads=4 accuracy=0" noenhanced, \
       'counter_0.dat' index 23 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 24 title "ring" noenhanced, \
       'counter_0.dat' index 24 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 25 title "reversible (lsh) L=4" noenhanced, \
       'counter_0.dat' index 25 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 26 title "reversible (lsh) L=12" noenhanced, \
       'counter_0.dat' index 26 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 27 title "reversible (lsh) L=4" noenhanced, \
       'counter_0.dat' index 27 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 28 title "reversible (lsh) L=12" noenhanced
  set output
}
