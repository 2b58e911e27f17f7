# accuracy_error.gp: written by `attnbench report`; run with `gnuplot accuracy_error.gp` in this folder
set title "Error against the exact attention, by the work done" noenhanced
set xlabel "query-key scores per token" noenhanced
set ylabel "||out - exact||_F / ||exact||_F" noenhanced
set key left top box opaque
set grid
set rmargin 4
set logscale x 2
set logscale y 10
set format y '%g'
set yrange [0.31222793891792722:10.66751296484485]
set style line 1 lc rgb '#999999' dt 2 lw 1
set style line 2 lc rgb '#555555' dt 2 lw 1
do for [term in 'pngcairo svg'] {
  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; set output 'accuracy_error.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; set output 'accuracy_error.svg' }
  plot 'accuracy_error.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "block_sparse, clustered inputs" noenhanced, \
       'accuracy_error.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "block_sparse, random inputs" noenhanced, \
       'accuracy_error.dat' index 2 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "etc, clustered inputs" noenhanced, \
       'accuracy_error.dat' index 3 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "etc, random inputs" noenhanced, \
       'accuracy_error.dat' index 4 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 5 title "lsh, clustered inputs" noenhanced, \
       'accuracy_error.dat' index 5 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lt 6 title "lsh, random inputs" noenhanced
  set output
}
